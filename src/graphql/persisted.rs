//! Persisted operations: Apollo's automatic persisted queries (APQ) and trusted documents.
//!
//! APQ: a client sends `extensions.persistedQuery = { version: 1, sha256Hash }` without the
//! document; the server answers from its cache, or `PERSISTED_QUERY_NOT_FOUND`, after which the
//! client sends hash and document together and the server remembers it. This saves bandwidth
//! and lets GET requests stay short (Apollo's `useGETForHashedQueries`). The cache is per
//! instance and bounded; a miss only costs one round trip.
//!
//! Trusted documents: `PERSISTED_OPERATIONS_FILE` names a manifest of the app's own operations
//! (Apollo's persisted-query manifest, or graphql-codegen's client-preset map of hash →
//! document). Its operations can be asked for by hash like APQ. With
//! `PERSISTED_OPERATIONS_ONLY=true` every other document is refused — at every door, because
//! the check runs in `GraphqlExecutor` — which shrinks what an attacker can send the sign-in
//! endpoint to the app's own operations.
//!
//! Cost on the hot path: a request without the `persistedQuery` extension, with the
//! trusted-only mode off, costs one map lookup.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::{Arc, Mutex},
};

use async_graphql::{Request, ServerError, Value};
use sha2::{Digest, Sha256};

use crate::error::code;

/// What the APQ cache may hold, in document bytes (entries are evicted beyond it).
const APQ_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// The operations of a `PERSISTED_OPERATIONS_FILE`.
#[derive(Debug, Default)]
pub struct Manifest {
    /// Manifest id (the hash the client sends) → document.
    by_id: HashMap<String, Arc<str>>,
    /// SHA-256 of every document, for the trusted-only check of full documents.
    digests: HashSet<[u8; 32]>,
}

impl Manifest {
    /// Reads a manifest file: Apollo's `{"format": "apollo-persisted-query-manifest",
    /// "version": 1, "operations": [{"id", "body", …}]}` or a JSON object of id → document.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        Self::parse(&text).map_err(|err| format!("{}: {err}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|err| format!("not JSON: {err}"))?;
        let mut manifest = Self::default();
        let Some(object) = json.as_object() else {
            return Err("a manifest is a JSON object".to_owned());
        };
        if object.get("format").and_then(|f| f.as_str()) == Some("apollo-persisted-query-manifest")
        {
            if object.get("version").and_then(|v| v.as_u64()) != Some(1) {
                return Err("only version 1 of Apollo's manifest format is known".to_owned());
            }
            let operations = object
                .get("operations")
                .and_then(|o| o.as_array())
                .ok_or("an Apollo manifest has an \"operations\" array")?;
            for operation in operations {
                let (Some(id), Some(body)) = (
                    operation.get("id").and_then(|v| v.as_str()),
                    operation.get("body").and_then(|v| v.as_str()),
                ) else {
                    return Err("every operation has a string \"id\" and \"body\"".to_owned());
                };
                manifest.insert(id, body);
            }
        } else {
            for (id, body) in object {
                let body = body
                    .as_str()
                    .ok_or_else(|| format!("the document of {id:?} is not a string"))?;
                manifest.insert(id, body);
            }
        }
        if manifest.by_id.is_empty() {
            return Err("the manifest holds no operations".to_owned());
        }
        Ok(manifest)
    }

    fn insert(&mut self, id: &str, body: &str) {
        self.digests.insert(sha256(body));
        self.by_id.insert(id.to_owned(), Arc::from(body));
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

pub struct PersistedOperations {
    manifest: Option<Arc<Manifest>>,
    only: bool,
    apq: Mutex<ApqCache>,
}

#[derive(Default)]
struct ApqCache {
    documents: HashMap<[u8; 32], Arc<str>>,
    bytes: usize,
}

impl PersistedOperations {
    pub fn new(manifest: Option<Arc<Manifest>>, only: bool) -> Self {
        Self {
            manifest,
            only,
            apq: Mutex::new(ApqCache::default()),
        }
    }

    /// Fills in the document of a request that names a persisted operation, remembers an APQ
    /// registration, and in trusted-only mode refuses a document the manifest lacks. Running it
    /// twice on one request (the GET handler resolves before its mutation check) is harmless.
    pub fn resolve(&self, request: &mut Request) -> Result<(), ServerError> {
        let persisted = match request.extensions.get("persistedQuery") {
            None => None,
            Some(value) => Some(PersistedQuery::read(value)?),
        };
        let Some(PersistedQuery { hash }) = persisted else {
            if self.only {
                self.check_trusted(&request.query)?;
            }
            return Ok(());
        };
        if request.query.is_empty() {
            // A manifest id may be any string (graphql-codegen can use SHA-1); APQ hashes are
            // SHA-256, and in trusted-only mode the APQ cache is not consulted.
            let found = self
                .manifest
                .as_ref()
                .and_then(|m| m.by_id.get(&hash).cloned())
                .or_else(|| {
                    let digest = decode_hash(&hash).filter(|_| !self.only)?;
                    self.apq_get(&digest)
                });
            return match found {
                Some(document) => {
                    request.query = document.to_string();
                    // Resolved: a second pass sees a plain document (and checks it as such).
                    request.extensions.remove("persistedQuery");
                    Ok(())
                }
                // Apollo's clients look for this message as well as the code.
                None => Err(error(
                    code::PERSISTED_QUERY_NOT_FOUND,
                    "PersistedQueryNotFound",
                )),
            };
        }
        let Some(digest) = decode_hash(&hash) else {
            return Err(error(
                code::BAD_USER_INPUT,
                "persistedQuery.sha256Hash is not a SHA-256 hash in hex.",
            ));
        };
        if sha256(&request.query) != digest {
            return Err(error(
                code::BAD_USER_INPUT,
                "provided sha does not match query",
            ));
        }
        if self.only {
            return self.check_trusted(&request.query);
        }
        self.apq_put(digest, &request.query);
        Ok(())
    }

    /// Trusted-only mode: the document must be one of the manifest's, byte for byte.
    fn check_trusted(&self, query: &str) -> Result<(), ServerError> {
        let trusted = self
            .manifest
            .as_ref()
            .is_some_and(|m| m.digests.contains(&sha256(query)));
        if trusted {
            Ok(())
        } else {
            Err(error(
                code::PERSISTED_QUERY_NOT_SUPPORTED,
                "This server runs only the app's registered operations; send a persisted \
                 operation's hash.",
            ))
        }
    }

    fn apq_get(&self, digest: &[u8; 32]) -> Option<Arc<str>> {
        let cache = self.apq.lock().unwrap_or_else(|p| p.into_inner());
        cache.documents.get(digest).cloned()
    }

    fn apq_put(&self, digest: [u8; 32], query: &str) {
        let mut cache = self.apq.lock().unwrap_or_else(|p| p.into_inner());
        if cache.documents.contains_key(&digest) || query.len() > APQ_CACHE_BYTES {
            return;
        }
        // Over budget: drop entries (in the map's arbitrary order) until the new one fits.
        while cache.bytes + query.len() > APQ_CACHE_BYTES {
            let Some(victim) = cache.documents.keys().next().copied() else {
                break;
            };
            if let Some(old) = cache.documents.remove(&victim) {
                cache.bytes -= old.len();
            }
        }
        cache.bytes += query.len();
        cache.documents.insert(digest, Arc::from(query));
    }
}

/// `extensions.persistedQuery` as Apollo's clients send it.
struct PersistedQuery {
    hash: String,
}

impl PersistedQuery {
    fn read(value: &Value) -> Result<Self, ServerError> {
        let Value::Object(fields) = value else {
            return Err(error(
                code::BAD_USER_INPUT,
                "extensions.persistedQuery must be an object.",
            ));
        };
        let version = match fields.get("version") {
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        };
        if version != Some(1) {
            return Err(error(
                code::PERSISTED_QUERY_NOT_SUPPORTED,
                "Only version 1 of persisted queries is supported.",
            ));
        }
        match fields.get("sha256Hash") {
            Some(Value::String(hash)) => Ok(Self {
                hash: hash.to_ascii_lowercase(),
            }),
            _ => Err(error(
                code::BAD_USER_INPUT,
                "persistedQuery.sha256Hash must be a string.",
            )),
        }
    }
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn decode_hash(hash: &str) -> Option<[u8; 32]> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hash, &mut digest).ok()?;
    Some(digest)
}

fn error(code: &str, message: &str) -> ServerError {
    let mut error = ServerError::new(message, None);
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_manifest_formats_load() {
        let apollo = r#"{"format":"apollo-persisted-query-manifest","version":1,
            "operations":[{"id":"abc","name":"Me","type":"query","body":"query Me { me { id } }"}]}"#;
        let manifest = Manifest::parse(apollo).expect("apollo");
        assert_eq!(manifest.len(), 1);
        assert!(manifest.digests.contains(&sha256("query Me { me { id } }")));
        let codegen = r#"{"def":"query Me { me { id } }"}"#;
        assert_eq!(Manifest::parse(codegen).expect("codegen").len(), 1);
        for bad in [
            "[]",
            "{}",
            r#"{"a":1}"#,
            r#"{"format":"apollo-persisted-query-manifest","version":2,"operations":[]}"#,
        ] {
            assert!(Manifest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_apq_cache_stays_within_its_budget() {
        let operations = PersistedOperations::new(None, false);
        let big = "x".repeat(APQ_CACHE_BYTES / 3 + 1);
        for i in 0..10u8 {
            operations.apq_put([i; 32], &big);
        }
        let cache = operations.apq.lock().expect("lock");
        assert!(cache.bytes <= APQ_CACHE_BYTES);
        assert_eq!(cache.documents.len(), 2);
    }
}

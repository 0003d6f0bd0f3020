//! Parsed documents, kept by their text. An app sends the same few operations again and again;
//! parsing one (async-graphql's pest parser) cost about a fifth of the CPU of a whole `me`
//! request, and cloning a parsed document costs a small fraction of parsing it.
//!
//! Nothing is skipped for a cached document: async-graphql still checks its depth and
//! directives and validates it against the schema for every request, and the executor's own
//! checks (`sensitive_fields`, the operation metrics) read it as before. Only documents that
//! passed validation once are kept (so the schema's depth and complexity limits bound what one
//! entry can hold), each at most [`MAX_DOCUMENT_BYTES`] of text, at most [`MAX_ENTRIES`] of
//! them; when full, the cache starts over, so a client sending endless distinct documents only
//! brings back the cost of parsing, never unbounded memory.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_graphql::{Request, parser::types::ExecutableDocument};

/// Documents longer than this are parsed every time (an app's operations are far shorter).
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024;
/// How many documents are kept at once.
pub const MAX_ENTRIES: usize = 256;

#[derive(Default)]
pub struct DocumentCache {
    documents: Mutex<HashMap<Arc<str>, Arc<ExecutableDocument>>>,
}

/// A request's parsed document, and whether it came from the cache.
pub struct Parsed {
    pub document: Arc<ExecutableDocument>,
    pub cached: bool,
}

impl DocumentCache {
    /// Parses the request's document, or takes it from the cache, and puts a copy in the
    /// request for execution. None when it does not parse (execution reports the error).
    pub fn parse(&self, request: &mut Request) -> Option<Parsed> {
        let found = self.lock().get(request.query.as_str()).cloned();
        if let Some(document) = found {
            request.set_parsed_query((*document).clone());
            return Some(Parsed {
                document,
                cached: true,
            });
        }
        let document = Arc::new(request.parsed_query().ok()?.clone());
        Some(Parsed {
            document,
            cached: false,
        })
    }

    /// Keeps `document`, the parse of `query`, which has just passed validation.
    pub fn keep(&self, query: &str, document: Arc<ExecutableDocument>) {
        if query.len() > MAX_DOCUMENT_BYTES {
            return;
        }
        let mut documents = self.lock();
        if documents.len() >= MAX_ENTRIES {
            documents.clear();
        }
        documents.insert(Arc::from(query), document);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<ExecutableDocument>>> {
        // A panic while holding this lock leaves a map that is still consistent.
        self.documents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_document_is_reused_and_the_cache_stays_bounded() {
        let cache = DocumentCache::default();
        let mut request = Request::new("{ me { id } }");
        let parsed = cache.parse(&mut request).expect("parses");
        assert!(!parsed.cached);
        cache.keep(&request.query, parsed.document.clone());
        let mut again = Request::new("{ me { id } }");
        let reused = cache.parse(&mut again).expect("cached");
        assert!(reused.cached);
        assert!(Arc::ptr_eq(&reused.document, &parsed.document));
        // The request got its own copy for execution.
        assert_eq!(
            again.parsed_query().expect("set").operations.iter().count(),
            1
        );

        assert!(cache.parse(&mut Request::new("{ me { ")).is_none());
        let long = format!("{{ me {{ id }} }}{}", " ".repeat(MAX_DOCUMENT_BYTES));
        let mut request = Request::new(long.clone());
        let parsed = cache.parse(&mut request).expect("parses");
        cache.keep(&long, parsed.document);
        assert_eq!(cache.len(), 1, "a long document is not kept");

        for i in 0..MAX_ENTRIES {
            let query = format!("{{ a{i}: me {{ id }} }}");
            let mut request = Request::new(query.clone());
            let parsed = cache.parse(&mut request).expect("parses");
            cache.keep(&query, parsed.document);
            assert!(cache.len() <= MAX_ENTRIES);
        }
        assert!(cache.len() < MAX_ENTRIES, "a full cache started over");
        assert!(!cache.is_empty());
    }
}

//! Embeds GraphiQL's browser bundles in the server when they are on disk, so `/` works with no
//! internet access; otherwise the server falls back to async-graphql's CDN page.
//!
//! The bundles come from npm at build or packaging time, never from the repository:
//! `npm ci` in `graphiql-assets/` puts graphiql's UMD bundle and stylesheet and React's UMD
//! builds under `graphiql-assets/node_modules`, which is where this script looks by default.
//! When they are missing there and `npm` is on the PATH, this script runs that `npm ci` itself,
//! so a fresh clone gets the offline page from `cargo run --release` alone; when npm is absent
//! or fails (no network), the build goes on with the CDN page. `GRAPHIQL_NPM=false` skips the
//! npm step. Either way a cargo warning names the page that was embedded (docs/tools.md).
//!
//! `GRAPHIQL_ASSETS_DIR` names another `node_modules` directory; when it is set, npm is not run
//! and missing bundles fail the build instead of falling back (the Dockerfile and CI rely on that
//! to never ship the CDN page by accident).
//!
//! What it writes to `OUT_DIR/graphiql_assets.rs` is read by `src/http/graphiql.rs`: a `BUNDLE`
//! constant, `Some` with every file (copied into `OUT_DIR` and embedded with `include_bytes!`)
//! and a content hash for cache-busting URLs, or `None`.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

/// (name served under /graphiql/<hash>/, path under node_modules or the crate, content type)
const VENDOR_FILES: &[(&str, &str, &str)] = &[
    (
        "react.production.min.js",
        "react/umd/react.production.min.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "react-dom.production.min.js",
        "react-dom/umd/react-dom.production.min.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "graphiql.min.js",
        "graphiql/graphiql.min.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "graphiql.min.css",
        "graphiql/graphiql.min.css",
        "text/css; charset=utf-8",
    ),
];

/// Our own start-up script: a file rather than an inline script, so the page's
/// Content-Security-Policy can forbid inline scripts.
const INIT_SCRIPT: &str = "src/http/graphiql_init.js";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    // Without any rerun-if-changed line cargo would rerun this on every change in the package.
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=GRAPHIQL_ASSETS_DIR");
    println!("cargo:rerun-if-env-changed=GRAPHIQL_NPM");

    let explicit = env::var_os("GRAPHIQL_ASSETS_DIR").filter(|dir| !dir.is_empty());
    let node_modules = match &explicit {
        Some(dir) => manifest_dir.join(dir),
        None => manifest_dir.join("graphiql-assets").join("node_modules"),
    };

    let mut missing = missing_files(&node_modules);
    let mut npm_outcome = None;
    if !missing.is_empty() && explicit.is_none() && npm_allowed() {
        // npm ci changes graphiql-assets/, which reruns this script on the next build. After a
        // failure (offline) that would retry npm on every build, so a failure is remembered in
        // OUT_DIR and not retried: the warning says to run `npm ci` by hand (`cargo clean`
        // forgets it).
        let failed_before = out_dir.join("npm-ci-failed");
        let outcome = match fs::read_to_string(&failed_before) {
            Ok(reason) => Err(format!("{reason}, on an earlier build")),
            Err(_) => {
                let outcome = npm_ci(&manifest_dir.join("graphiql-assets"));
                if let Err(reason) = &outcome {
                    fs::write(&failed_before, reason).expect("OUT_DIR is writable");
                }
                outcome
            }
        };
        npm_outcome = Some(outcome);
        missing = missing_files(&node_modules);
    }

    let generated = if missing.is_empty() {
        println!(
            "cargo:warning=GraphiQL: the offline page is embedded (graphiql {} from {})",
            package_version(&node_modules, "graphiql"),
            node_modules.display()
        );
        embed(&manifest_dir, &node_modules, &out_dir)
    } else {
        if explicit.is_some() {
            panic!(
                "GRAPHIQL_ASSETS_DIR={} lacks GraphiQL's bundles ({}); run `npm ci` in graphiql-assets/ \
                 or unset GRAPHIQL_ASSETS_DIR for the CDN page",
                node_modules.display(),
                missing
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let why = match npm_outcome {
            None if !npm_allowed() => "GRAPHIQL_NPM=false".to_owned(),
            None => "the bundles are missing".to_owned(),
            Some(Err(reason)) => reason,
            Some(Ok(())) => "npm ci did not produce the bundles".to_owned(),
        };
        println!(
            "cargo:warning=GraphiQL: the CDN page is embedded ({why}); browsers load GraphiQL from \
             unpkg.com. For the offline page run `npm ci` in graphiql-assets/ and build again."
        );
        // Watch the nearest existing directory, so that `npm ci` creating node_modules later
        // triggers a rebuild. (A path that does not exist would rerun this script every build.)
        if let Some(existing) = node_modules.ancestors().find(|dir| dir.is_dir()) {
            println!("cargo:rerun-if-changed={}", existing.display());
        }
        "/// Generated by build.rs: GraphiQL's bundles were not found at build time.\n\
         pub(super) const BUNDLE: Option<Bundle> = None;\n"
            .to_owned()
    };
    fs::write(out_dir.join("graphiql_assets.rs"), generated).expect("OUT_DIR is writable");
}

/// The bundles `node_modules` lacks.
fn missing_files(node_modules: &Path) -> Vec<PathBuf> {
    VENDOR_FILES
        .iter()
        .map(|(_, path, _)| node_modules.join(path))
        .filter(|path| !path.is_file())
        .collect()
}

/// `GRAPHIQL_NPM` unset or anything but false/0/no/off.
fn npm_allowed() -> bool {
    !env::var("GRAPHIQL_NPM").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "false" | "0" | "no" | "off"
        )
    })
}

/// Runs `npm ci` in `graphiql-assets/` (the versions its lockfile pins). Err says why not, for
/// the warning: npm is not installed, or it failed (typically: no network).
fn npm_ci(dir: &Path) -> Result<(), String> {
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    // Short network timeouts: offline, the build should fall back in seconds, not minutes.
    let output = Command::new(npm)
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--fetch-retries=1",
            "--fetch-timeout=30000",
        ])
        .current_dir(dir)
        .output()
        .map_err(|err| format!("npm is not available: {err}"))?;
    if output.status.success() {
        return Ok(());
    }
    // npm's first error lines say what went wrong; the last one only where its log is.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.contains("complete log of this run"))
        .take(2)
        .collect();
    Err(format!(
        "npm ci in graphiql-assets failed: {}",
        if first.is_empty() {
            "no output".to_owned()
        } else {
            first.join("; ")
        }
    ))
}

/// Copies the files into OUT_DIR and returns the Rust source describing them.
fn embed(manifest_dir: &Path, node_modules: &Path, out_dir: &Path) -> String {
    let copy_dir = out_dir.join("graphiql");
    fs::create_dir_all(&copy_dir).expect("OUT_DIR is writable");

    let mut files: Vec<(&str, PathBuf, &str)> = VENDOR_FILES
        .iter()
        .map(|&(name, path, content_type)| (name, node_modules.join(path), content_type))
        .collect();
    files.push((
        "init.js",
        manifest_dir.join(INIT_SCRIPT),
        "text/javascript; charset=utf-8",
    ));

    let mut hash = Fnv1a::new();
    let mut assets = String::new();
    for (name, source, content_type) in &files {
        println!("cargo:rerun-if-changed={}", source.display());
        let bytes = fs::read(source)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", source.display()));
        hash.write(name.as_bytes());
        hash.write(&bytes);
        let copy = copy_dir.join(name);
        fs::write(&copy, &bytes).expect("OUT_DIR is writable");
        assets.push_str(&format!(
            "    Asset {{ name: {name:?}, content_type: {content_type:?}, body: include_bytes!({:?}) }},\n",
            copy.display().to_string()
        ));
    }

    let graphiql_version = package_version(node_modules, "graphiql");
    let react_version = package_version(node_modules, "react");
    format!(
        "/// Generated by build.rs from {}.\n\
         pub(super) const BUNDLE: Option<Bundle> = Some(Bundle {{\n\
         \x20   hash: {:?},\n\
         \x20   graphiql_version: {graphiql_version:?},\n\
         \x20   react_version: {react_version:?},\n\
         \x20   assets: &[\n{assets}    ],\n\
         }});\n",
        node_modules.display(),
        format!("{:016x}", hash.finish()),
    )
}

/// The `version` of node_modules/<package>/package.json, for the page's footer and logs.
fn package_version(node_modules: &Path, package: &str) -> String {
    let path = node_modules.join(package).join("package.json");
    println!("cargo:rerun-if-changed={}", path.display());
    let text = fs::read_to_string(&path).unwrap_or_default();
    // No JSON parser among the build dependencies: the first `"version": "…"` is the package's.
    text.split("\"version\"")
        .nth(1)
        .and_then(|rest| rest.split('"').nth(1))
        .unwrap_or("unknown")
        .to_owned()
}

/// FNV-1a, 64 bits: a content hash for cache-busting URLs (not a security boundary), in a few
/// lines instead of a build dependency.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

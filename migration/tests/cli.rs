//! The migration command line fails with a sentence, not a panic, when it has no database or
//! cannot open it; with a database it works.

use std::process::{Command, Output};

/// The binary in an empty temporary directory (no `.env`), without `DATABASE_URL`.
fn migration(args: &[&str], database_url: Option<&str>) -> Output {
    let dir = std::env::temp_dir().join(format!("migration-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_migration"));
    command
        .args(args)
        .current_dir(&dir)
        .env_remove("DATABASE_URL");
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command.output().expect("the migration binary runs")
}

#[test]
fn without_database_url_it_says_what_to_set() {
    let out = migration(&["status"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("DATABASE_URL is not set"), "{stderr}");
    assert!(stderr.contains("cargo run -p migration"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_database_that_cannot_be_opened_is_an_error_not_a_panic() {
    // A SQLite file in a directory that does not exist (and no mode=rwc to create it).
    let out = migration(
        &["status"],
        Some("sqlite:///no-such-directory/phone-auth.db"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot open the database"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn with_a_database_it_migrates() {
    let file = std::env::temp_dir().join(format!(
        "migration-cli-{}-{}.db",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let out = migration(&["up"], Some(&url));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = migration(&["status"], Some(&url));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&file);
}

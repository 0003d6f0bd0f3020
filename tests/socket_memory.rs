//! What a WebSocket peer can make the server hold in memory, measured by the process's RSS.
//!
//! A test binary of its own: RSS is process-wide, and in the API suite another test running
//! beside this one (a failing test's backtrace alone maps a few hundred MiB of debug info)
//! would move it.

#[path = "api/helpers.rs"]
mod helpers;
#[path = "api/socket_client.rs"]
mod socket_client;

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use helpers::TestApp;
use socket_client::{connect, raw_tcp, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_floods_pings_and_never_reads_cannot_grow_the_servers_memory() {
    // Each ping is answered with a pong. A peer that never reads leaves them in the socket's
    // write buffer, which must stay capped (about 1 MiB) instead of growing by what the peer
    // uploads: 160 MiB of pings here. The test's process is the server's, so its RSS tells.
    const FLOOD_BYTES: usize = 160 * 1024 * 1024;
    let app = TestApp::spawn().await;
    let addr = serve(&app).await;
    let mut socket = connect(addr, None).await;
    // Masked ping frames with the largest control payload (125 bytes), written raw: a client
    // library would also read, and this peer must not.
    let mut frame = vec![0x89, 0x80 | 125, 1, 2, 3, 4];
    frame.extend(std::iter::repeat_n(b'p', 125));
    let chunk: Vec<u8> = frame.repeat((1024 * 1024) / frame.len());
    let before = rss_kib();
    let tcp = raw_tcp(&mut socket);
    let mut sent = 0;
    while sent < FLOOD_BYTES {
        // The server may close the socket once its write buffer is full; that is a pass too.
        if tcp.write_all(&chunk).await.is_err() {
            break;
        }
        sent += chunk.len();
    }
    // Let the server read what is still in flight.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 48,
        "RSS grew {grown_mib} MiB while a peer sent {} MiB of pings and read nothing",
        sent / (1024 * 1024)
    );
    assert_eq!(app.get("/healthz", &[]).await.status, 200);
}

/// This process's resident memory (Linux), in KiB.
fn rss_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

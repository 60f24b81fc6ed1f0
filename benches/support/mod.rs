//! What every benchmark here shares: whether it runs as a measurement
//! (`cargo bench` passes `--bench`) or as a one-round smoke test under
//! `cargo test`, and the two-worker runtime they all measure on.

/// `true` under `cargo bench`; `false` for the smoke round under `cargo test`.
pub fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The runtime every benchmark measures on: two workers, like the machine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

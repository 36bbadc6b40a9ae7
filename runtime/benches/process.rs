//! Process-layer benchmarks (issue 5). Prints one table; numbers go to
//! docs/benchmarks.md `## Processes`.
//!
//! Run: `cargo bench -p replicode-runtime --bench process`
//! (build the guests first: `make -C wasm_programs`, for the kernel rows).
//!
//! - echo round trip: deliver a line to a blocked server, resume it, answer,
//!   suspend again, commit (shadow sync) — the whole `deliver_stdin` path;
//! - snapshot + digest of 16 MiB memory with 1% of pages changed: shadow sync +
//!   incremental Merkle root, and separately the full serialization;
//! - the suspend mechanism's cost on a compute kernel: the same C kernel, plain
//!   vs Asyncify-transformed, both under plain wasmtime + wasmtime-wasi.

#[path = "../tests/process_support/mod.rs"]
mod process_support;

use std::time::{Duration, Instant};

use process_support::{machine, FUEL};
use replicode_runtime::process::digest::{MemoryShadow, PAGE_SIZE};

fn per_iter(total: Duration, n: u32) -> f64 {
    total.as_secs_f64() * 1e6 / f64::from(n)
}

fn echo_round_trip() {
    let (mut t, m) = machine();
    let (pid, _) = t
        .spawn(m, &["echo".into()], &[], None, FUEL)
        .expect("spawn");
    let line = b"hello, replicated world\n";
    for _ in 0..1000 {
        t.deliver_stdin(pid, line, false, FUEL).expect("deliver");
    }
    let n = 20_000;
    let start = Instant::now();
    for _ in 0..n {
        let out = t.deliver_stdin(pid, line, false, FUEL).expect("deliver");
        assert_eq!(out.outputs.len(), 1);
    }
    let us = per_iter(start.elapsed(), n);
    println!(
        "echo round trip (WAT server, 192 KiB memory)   {us:8.2} µs/input   ({:.0} inputs/s)",
        1e6 / us
    );
    let start = Instant::now();
    let digests = 2000;
    for _ in 0..digests {
        t.deliver_stdin(pid, line, false, FUEL).expect("deliver");
        std::hint::black_box(t.digest().expect("digest"));
    }
    println!(
        "echo round trip + table digest                  {:8.2} µs/input",
        per_iter(start.elapsed(), digests)
    );
}

/// A WASI process table running the built C guest `name` (Asyncify'd with the
/// WASI blocking imports) spawned with `args` under `spawn_fuel`, and its pid;
/// `None` (with a note) if the guest is not built.
fn spawn_c_guest(
    name: &str,
    args: &[&str],
    spawn_fuel: u64,
) -> Option<(
    replicode_runtime::process::ProcessTable<replicode_runtime::process::wasi_host::WasiProcess>,
    u64,
)> {
    use replicode_runtime::process::wasi_host::{WasiEnv, WasiProcess};
    use replicode_runtime::process::{ProcessModule, ProcessTable, TableLimits};
    let path = format!(
        "{}/../wasm_programs/build/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    );
    let Ok(wasm) = std::fs::read(&path) else {
        println!("{name}.wasm missing (run make -C wasm_programs); skipped");
        return None;
    };
    let bytes = process_support::asyncify(
        &wasm,
        "wasi_snapshot_preview1.fd_read,wasi_snapshot_preview1.poll_oneoff",
    );
    let engine = process_support::new_engine();
    let m =
        std::sync::Arc::new(ProcessModule::<WasiProcess>::new(&engine, &bytes).expect("module"));
    let fs = replicode_runtime::fs::shared(replicode_runtime::fs::mem::MemFs::new(
        Default::default(),
        0,
    ));
    let mut t = ProcessTable::new(WasiEnv::new(fs), TableLimits::default());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (pid, _) = t.spawn(m, &args, &[], None, spawn_fuel).expect("spawn");
    Some((t, pid))
}

/// The same round trip with the C `echo_server` (wasi-libc `getline`) through
/// the real WASI context.
fn echo_round_trip_c() {
    let Some((mut t, pid)) = spawn_c_guest("echo_server", &["echo_server"], FUEL) else {
        return;
    };
    let line = b"hello, replicated world\n";
    for _ in 0..1000 {
        t.deliver_stdin(pid, line, false, FUEL).expect("deliver");
    }
    let n = 20_000;
    let start = Instant::now();
    for _ in 0..n {
        let out = t.deliver_stdin(pid, line, false, FUEL).expect("deliver");
        assert_eq!(out.outputs.len(), 1);
    }
    let us = per_iter(start.elapsed(), n);
    println!(
        "echo round trip (C echo_server, WASI)           {us:8.2} µs/input   ({:.0} inputs/s)",
        1e6 / us
    );
}

/// One small input to a server with a 64 MiB heap (`memtouch 64`, touching one
/// page per input): write tracking makes the input's cost follow the pages it
/// wrote. Baseline in the same run: one whole-memory compare of the same
/// memory, which is what accepting each input cost before write tracking.
fn big_heap_round_trip() {
    // The default table limits allow 256 MiB per process.
    let Some((mut t, pid)) = spawn_c_guest("memtouch", &["memtouch", "64"], 1 << 40) else {
        return;
    };
    t.digest().expect("digest");
    let n = 2_000;
    let start = Instant::now();
    for _ in 0..n {
        let out = t.deliver_stdin(pid, b"1\n", false, FUEL).expect("deliver");
        assert_eq!(out.outputs.len(), 1);
    }
    let us = per_iter(start.elapsed(), n);
    let memory: Vec<u8> = (0..64usize << 20).map(|i| (i % 251) as u8).collect();
    let mut shadow = MemoryShadow::new(&memory);
    let rounds = 20;
    let start = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(shadow.sync(std::hint::black_box(&memory)));
    }
    let compare = per_iter(start.elapsed(), rounds);
    println!(
        "1-page input, 64 MiB heap (C memtouch)          {us:8.2} µs/input   \
         (whole-memory compare it replaces: {compare:.0} µs; {} untracked pages)",
        t.untracked_pages()
    );
}

/// Deterministic page choice (xorshift) so runs are comparable.
fn pick_pages(pages: usize, count: usize, seed: &mut u64) -> Vec<usize> {
    (0..count)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed % pages as u64) as usize
        })
        .collect()
}

fn snapshot_digest_16mib() {
    let size = 16 << 20;
    let pages = size / PAGE_SIZE;
    let mut mem: Vec<u8> = (0..size)
        .map(|i| (i as u32).wrapping_mul(2654435761) as u8)
        .collect();
    let mut shadow = MemoryShadow::new(&mem);
    shadow.root();
    let changed = pages / 100;
    let mut seed = 0x9e3779b97f4a7c15u64;
    let rounds = 50u32;
    let mut total = Duration::ZERO;
    let mut worst = Duration::ZERO;
    for round in 0..rounds {
        for p in pick_pages(pages, changed, &mut seed) {
            mem[p * PAGE_SIZE + round as usize % PAGE_SIZE] ^= 0xa5;
        }
        let start = Instant::now();
        let stats = shadow.sync(&mem);
        std::hint::black_box(shadow.root());
        let took = start.elapsed();
        assert!(stats.changed_pages > 0);
        total += took;
        worst = worst.max(took);
    }
    println!(
        "16 MiB, 1% pages changed: sync + digest          {:8.1} µs mean, {:.1} µs worst ({changed} of {pages} pages)",
        per_iter(total, rounds),
        worst.as_secs_f64() * 1e6
    );
    let start = Instant::now();
    let full = MemoryShadow::new(&mem).root();
    println!(
        "16 MiB full hash (first digest, for contrast)   {:8.1} µs",
        start.elapsed().as_secs_f64() * 1e6
    );
    std::hint::black_box(full);
    let start = Instant::now();
    let mut w = replicode_runtime::process::codec::Writer::new();
    replicode_runtime::process::image::encode_memory(&mem, &mut w);
    let bytes = w.into_bytes();
    println!(
        "16 MiB full serialization (non-zero pages)      {:8.1} µs ({} bytes)",
        start.elapsed().as_secs_f64() * 1e6,
        bytes.len()
    );
}

fn run_kernel(engine: &wasmtime::Engine, wasm: &[u8], args: &[&str]) -> Duration {
    let module = wasmtime::Module::new(engine, wasm).expect("compile kernel");
    let mut linker: wasmtime::Linker<wasmtime_wasi::p1::WasiP1Ctx> = wasmtime::Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |c| c).expect("link wasi");
    let ctx = wasmtime_wasi::WasiCtxBuilder::new().args(args).build_p1();
    let mut store = wasmtime::Store::new(engine, ctx);
    let instance = linker
        .instantiate(&mut store, &module)
        .expect("instantiate kernel");
    let start_fn = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .expect("_start");
    let start = Instant::now();
    if let Err(e) = start_fn.call(&mut store, ()) {
        let code = e.downcast_ref::<wasmtime_wasi::I32Exit>().map(|c| c.0);
        assert_eq!(code, Some(0), "kernel failed: {e:#}");
    }
    start.elapsed()
}

fn asyncify_slowdown() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../wasm_programs/build");
    let engine = wasmtime::Engine::default();
    for (name, args) in [
        ("intkernel", &["intkernel", "3000000", "10"][..]),
        ("nbody", &["nbody", "2000000"][..]),
    ] {
        let Ok(plain) = std::fs::read(format!("{dir}/{name}.wasm")) else {
            println!("{name}: {dir}/{name}.wasm missing (run make -C wasm_programs); skipped");
            continue;
        };
        let blocking = process_support::asyncify(
            &plain,
            "wasi_snapshot_preview1.fd_read,wasi_snapshot_preview1.poll_oneoff",
        );
        // Worst case: also treat fd_write as blocking, so printf's paths (and
        // every indirect call) are instrumented.
        let worst = process_support::asyncify(
            &plain,
            "wasi_snapshot_preview1.fd_read,wasi_snapshot_preview1.poll_oneoff,wasi_snapshot_preview1.fd_write",
        );
        let best = |w: &[u8]| {
            (0..3)
                .map(|_| run_kernel(&engine, w, args))
                .min()
                .unwrap_or_default()
        };
        let (p, b, x) = (best(&plain), best(&blocking), best(&worst));
        println!(
            "{name:9} plain {:7.1} ms | asyncified {:7.1} ms ({:.3}x) | fd_write also blocking {:7.1} ms ({:.3}x) | size {} -> {} / {} bytes",
            p.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3,
            b.as_secs_f64() / p.as_secs_f64(),
            x.as_secs_f64() * 1e3,
            x.as_secs_f64() / p.as_secs_f64(),
            plain.len(),
            blocking.len(),
            worst.len()
        );
    }
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent: keep it quick then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("process bench: pass --bench (cargo bench) to run");
        return;
    }
    echo_round_trip();
    echo_round_trip_c();
    big_heap_round_trip();
    snapshot_digest_16mib();
    asyncify_slowdown();
}

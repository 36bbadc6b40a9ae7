//! Validators killed with SIGKILL — idle and while inputs flow — restart and agree.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use replicode_e2e::{install_and_spawn, send_line, Testnet};

#[test]
fn kill9_one_validator_chain_goes_on_restart_catches_up_and_agrees() -> anyhow::Result<()> {
    let net = Testnet::up(4)?;
    let acct = net.account("default")?;
    let port0 = net.nodes[0].rpc_port;
    let pid = install_and_spawn(port0, &acct, "kv_server", &["/kv.log"])?;
    net.kill9(3);
    for i in 0..10u64 {
        let r = send_line(port0, &acct, pid, &format!("SET a{i} {i}"))?;
        assert_eq!(r.stdout(), "OK\n", "SET a{i} while node3 is down");
    }
    let top = net.height(0)?;
    net.restart_stopped()?;
    net.wait_height(3, top + 1, Duration::from_secs(60))?;
    let get = send_line(net.nodes[3].rpc_port, &acct, pid, "GET a9")?;
    assert_eq!(get.stdout(), "VALUE 9\n");
    net.verify()?;
    Ok(())
}

#[test]
fn kill9_while_inputs_flow_including_during_commit_loses_nothing() -> anyhow::Result<()> {
    let net = Testnet::up(4)?;
    let acct = net.account("default")?;
    let port0 = net.nodes[0].rpc_port;
    let pid = install_and_spawn(port0, &acct, "kv_server", &["/kv.log"])?;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let acct = acct.clone();
        std::thread::spawn(move || -> anyhow::Result<u64> {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) && n < 400 {
                let r = send_line(port0, &acct, pid, &format!("SET w{n} {n}"))?;
                anyhow::ensure!(r.stdout() == "OK\n", "SET w{n}: {:?} {}", r.stdout(), r.log);
                n += 1;
            }
            Ok(n)
        })
    };
    // Kill node 2 at several offsets into the block cycle (200 ms commits), so some
    // kills land inside FinalizeBlock/Commit; restart it each time.
    for delay_ms in [150u64, 330, 470, 610] {
        std::thread::sleep(Duration::from_millis(delay_ms));
        net.kill9(2);
        std::thread::sleep(Duration::from_millis(300));
        net.restart_stopped()?;
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    assert!(written > 0, "no input got through");
    let top = net.height(0)?;
    net.wait_height(2, top, Duration::from_secs(60))?;
    for n in [0, written / 2, written - 1] {
        let get = send_line(net.nodes[2].rpc_port, &acct, pid, &format!("GET w{n}"))?;
        assert_eq!(get.stdout(), format!("VALUE {n}\n"), "w{n} lost");
    }
    net.verify()?;
    Ok(())
}

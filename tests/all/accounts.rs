//! Issue 12 on a real testnet: two accounts, each with a private service and
//! its own filesystem; a public service that answers both.

use replicode_abci::codes::Code;
use replicode_abci::tx::{Body, Install, Kill, Spawn};
use replicode_e2e::{guest, send_line, submit, Account, Testnet};

fn spawn(
    port: u16,
    account: &Account,
    path: &str,
    args: &[&str],
    public: bool,
) -> anyhow::Result<u64> {
    let r = submit(
        port,
        account,
        Body::Spawn(Spawn {
            path: path.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec![],
            public,
        }),
    )?;
    anyhow::ensure!(r.code == 0, "spawn {path}: {}", r.log);
    Ok(r.output.pid)
}

fn install(port: u16, account: &Account, name: &str, path: &str) -> anyhow::Result<u32> {
    let wasm = std::fs::read(guest(name)?)?;
    Ok(submit(
        port,
        account,
        Body::Install(Install {
            path: path.into(),
            wasm,
        }),
    )?
    .code)
}

#[test]
fn accounts_own_their_services_and_files_and_public_services_serve_everyone() -> anyhow::Result<()>
{
    let net = Testnet::up_with_accounts(4, &["alice=1000000000000000", "bob=1000000000000000"])?;
    let alice = net.account("alice")?;
    let bob = net.account("bob")?;
    let alice_home = alice
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .address()
        .to_string();
    let port = net.nodes[0].rpc_port;

    assert_eq!(install(port, &alice, "kv_server", "/bin/kv_server")?, 0);
    let private = spawn(port, &alice, "/bin/kv_server", &["/kv.log"], false)?;
    let public = spawn(port, &alice, "/bin/kv_server", &["/shared.log"], true)?;
    assert_eq!(
        send_line(port, &alice, private, "SET secret 42")?.stdout(),
        "OK\n"
    );

    // Bob may not feed or kill Alice's private service, kill her public one,
    // or replace her program.
    let unauthorized = Code::Unauthorized.value();
    let fed = send_line(port, &bob, private, "GET secret")?;
    assert_eq!(fed.code, unauthorized, "{}", fed.log);
    assert!(
        fed.output.writes.is_empty(),
        "nothing ran: {:?}",
        fed.stdout()
    );
    for pid in [private, public] {
        let killed = submit(port, &bob, Body::Kill(Kill { pid }))?;
        assert_eq!(killed.code, unauthorized, "kill {pid}: {}", killed.log);
    }
    assert_eq!(
        install(port, &bob, "hostile", "/bin/kv_server")?,
        unauthorized
    );

    // The public service answers both.
    assert_eq!(
        send_line(port, &alice, public, "SET k from-alice")?.stdout(),
        "OK\n"
    );
    assert_eq!(
        send_line(port, &bob, public, "GET k")?.stdout(),
        "VALUE from-alice\n"
    );

    // Bob's own process sees his home as `/` and `/bin` read-only; Alice's
    // files are out of reach by every path (the seed's `../../pid_10` test).
    assert_eq!(install(port, &bob, "hostile", "/bin/probe")?, 0);
    let probe = spawn(port, &bob, "/bin/probe", &[], false)?;
    for path in [
        format!("../{alice_home}/kv.log"),
        format!("/../{alice_home}/kv.log"),
        format!("../../home/{alice_home}/kv.log"),
        format!("/home/{alice_home}/kv.log"),
        "/kv.log".to_string(),
    ] {
        let out = send_line(port, &bob, probe, &format!("read {path}"))?.stdout();
        assert!(out.starts_with("err read"), "bob read {path}: {out:?}");
    }
    let out = send_line(port, &bob, probe, "write /bin/kv_server overwritten")?.stdout();
    assert!(out.starts_with("err write"), "bob wrote /bin: {out:?}");
    let out = send_line(port, &bob, probe, "read /bin/kv_server")?.stdout();
    assert!(out.starts_with("ok read"), "/bin is readable: {out:?}");
    let out = send_line(port, &bob, probe, "write /mine.txt hello")?.stdout();
    assert_eq!(out, "ok write /mine.txt\n");
    assert_eq!(
        send_line(port, &bob, probe, "read /mine.txt")?.stdout(),
        "ok read hello\n"
    );

    // Chain state is public: anyone can read (and prove) every home.
    let bob_home = bob
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .address()
        .to_string();
    let mine = net.run(&[
        "query",
        "--testnet",
        net.dir_str(),
        "file",
        &format!("/home/{bob_home}/mine.txt"),
    ])?;
    assert_eq!(String::from_utf8_lossy(&mine.stdout), "hello");
    let log = net.run(&[
        "query",
        "--testnet",
        net.dir_str(),
        "file",
        &format!("/home/{alice_home}/kv.log"),
        "--prove",
    ])?;
    assert!(
        log.status.success(),
        "{}",
        String::from_utf8_lossy(&log.stderr)
    );
    assert!(String::from_utf8_lossy(&log.stdout).contains("secret"));

    // The owner may do all of it.
    let killed = submit(port, &alice, Body::Kill(Kill { pid: private }))?;
    assert_eq!(killed.code, 0, "{}", killed.log);
    net.verify()?;
    Ok(())
}

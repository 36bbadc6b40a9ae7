//! `replicode verify`: every validator's own app hash at every height, compared.
//!
//! The app hash each node reports in `/block_results?height=H` is what its own app
//! returned from FinalizeBlock — not the agreed header — so a validator that
//! computed something different shows up here by name.

use std::process::ExitCode;

use anyhow::bail;

use crate::cmd::testnet::Layout;
use crate::cmd::OutputFormat;
use crate::rpc::Rpc;

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// RPC URLs of the validators (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Or: every validator of this testnet directory.
    #[arg(long)]
    pub testnet: Option<std::path::PathBuf>,
    /// First height to compare.
    #[arg(long, default_value_t = 1)]
    pub from: u64,
    /// Print only divergent heights and the summary.
    #[arg(long)]
    pub quiet: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// One row of the table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub height: u64,
    /// Per node, the hex app hash (or the error text).
    pub hashes: Vec<String>,
    pub agree: bool,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let (names, urls) = targets(&args)?;
    let rpcs = urls
        .iter()
        .map(|u| Rpc::new(u))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut top = u64::MAX;
    for (rpc, name) in rpcs.iter().zip(&names) {
        let status = rpc
            .status()
            .map_err(|e| e.context(format!("validator {name} is unreachable")))?;
        top = top.min(status.height);
    }
    // /status counts a block as soon as it is stored, a moment before its results
    // (which carry the app hash) are: stop one short of the lowest reported height,
    // so a validator that is merely mid-block is not reported as diverging.
    let top = top.saturating_sub(1);
    let mut rows = Vec::new();
    let mut first_bad: Option<(u64, String)> = None;
    for height in args.from..=top {
        let hashes: Vec<String> = rpcs
            .iter()
            .map(|r| {
                r.app_hash_at(height)
                    .map(hex::encode_upper)
                    .unwrap_or_else(|e| format!("error: {e:#}"))
            })
            .collect();
        let reference = majority(&hashes);
        let agree = hashes.iter().all(|h| *h == reference);
        if !agree && first_bad.is_none() {
            let who = hashes
                .iter()
                .position(|h| *h != reference)
                .map(|i| names[i].clone())
                .unwrap_or_default();
            first_bad = Some((height, who));
        }
        rows.push(Row {
            height,
            hashes,
            agree,
        });
    }
    match args.output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({"validators": names, "rows": rows, "agree": first_bad.is_none(),
                "first_divergence": first_bad.as_ref().map(|(h, n)| serde_json::json!({"height": h, "validator": n}))})
        ),
        OutputFormat::Text => print_table(&names, &rows, args.quiet),
    }
    match first_bad {
        None => {
            if args.output == OutputFormat::Text {
                println!(
                    "all {} validators agree on heights {}..={top}",
                    names.len(),
                    args.from
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Some((height, who)) => {
            eprintln!("replicode: validator {who} diverges first at height {height}");
            Ok(ExitCode::from(1))
        }
    }
}

fn targets(args: &VerifyArgs) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    if let Some(dir) = &args.testnet {
        let layout = Layout::load(dir)?;
        return Ok((
            layout.nodes.iter().map(|n| n.name.clone()).collect(),
            layout.nodes.iter().map(|n| n.rpc_url()).collect(),
        ));
    }
    if args.nodes.is_empty() {
        bail!("name the validators with --nodes URL,URL,... or --testnet DIR");
    }
    Ok((args.nodes.clone(), args.nodes.clone()))
}

/// The most common value (ties: the smallest, so the choice is stable).
fn majority(values: &[String]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for v in values {
        *counts.entry(v.clone()).or_insert(0usize) += 1;
    }
    let best = counts.values().copied().max().unwrap_or(0);
    counts
        .into_iter()
        .find(|(_, c)| *c == best)
        .map(|(v, _)| v)
        .unwrap_or_default()
}

fn print_table(names: &[String], rows: &[Row], quiet: bool) {
    let mut header = format!("{:>7}", "HEIGHT");
    for n in names {
        header.push_str(&format!("  {:<12}", n.get(..12.min(n.len())).unwrap_or(n)));
    }
    header.push_str("  AGREE");
    println!("{header}");
    for row in rows {
        if quiet && row.agree {
            continue;
        }
        let mut line = format!("{:>7}", row.height);
        for h in &row.hashes {
            line.push_str(&format!("  {:<12}", h.get(..12.min(h.len())).unwrap_or(h)));
        }
        line.push_str(if row.agree { "  yes" } else { "  NO" });
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::majority;

    #[test]
    fn majority_picks_the_common_hash() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(majority(&v(&["a", "b", "a", "a"])), "a");
        assert_eq!(majority(&v(&["b", "a"])), "a");
    }
}

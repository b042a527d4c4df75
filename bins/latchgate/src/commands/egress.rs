//! `latchgate egress …`: the second egress layer. `squid-config` turns the
//! allowlists of every `proxy_allowlist` manifest into a Squid config plus a
//! dstdomain file, with the same domain rules the executor applies
//! (`latchgate_core::egress`), so that the proxy refuses what the gate would.

use latchgate_core::config::LoadedConfig;
use latchgate_core::egress::{SquidPlan, proxy_allowlist_domains, squid_listen_address, write_squid_files};
use latchgate_core::manifest::Registry;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::admin_client::{AdminSession, OperatorArgs};
use super::output::{self, Exit, Failure, Table, Tone};

#[derive(clap::Subcommand)]
pub enum EgressCommand {
    /// Write squid.conf and squid-allowlist.txt from every manifest with `egress.profile: proxy_allowlist`.
    SquidConfig(SquidConfigArgs),
    /// Destinations agents asked for that an action's allowlist refused (admin socket).
    Learned(super::operations::JsonArgs),
    /// Allow HOST for ACTION beyond its manifest (policy data `egress_allow`; admin socket).
    Allow(EgressEditArgs),
    /// Withdraw a host allowed with `egress allow`.
    Disallow(EgressEditArgs),
}

#[derive(clap::Args)]
pub struct EgressEditArgs {
    action_id: String,
    host: String,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct SquidConfigArgs {
    /// Directory to write squid.conf and squid-allowlist.txt into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Address Squid listens on. Default: the host:port of `egress.proxy_url`, else 127.0.0.1:3128.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Squid's pid file and logs (must be writable by Squid's user). Default: <out>/state.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Print what was written as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config: &Path, operator: &OperatorArgs, command: EgressCommand) -> ExitCode {
    match command {
        EgressCommand::SquidConfig(args) => squid_config(config, args),
        EgressCommand::Learned(args) => output::finish(args.json, learned(config, operator, args.json)),
        EgressCommand::Allow(args) => output::finish(args.json, edit(config, operator, &args, true)),
        EgressCommand::Disallow(args) => output::finish(args.json, edit(config, operator, &args, false)),
    }
}

fn learned(config: &Path, operator: &OperatorArgs, json: bool) -> Result<Exit, Failure> {
    let mut session = AdminSession::connect(config, operator)?;
    let doc = session.get("/v1/admin/egress/learned")?;
    if json {
        output::print_json(&doc);
        return Ok(Exit::Ok);
    }
    let domains = doc["domains"].as_array().cloned().unwrap_or_default();
    if domains.is_empty() {
        output::write_stdout("no refused destinations on record\n");
        return Ok(Exit::Ok);
    }
    let text = output::value_text;
    let mut table = Table::new(&["ACTION", "DOMAIN", "COUNT", "LAST SEEN", "ALLOWED"]);
    for d in &domains {
        let allowed = d["allowed"] == true;
        table.row(vec![
            (text(&d["action_id"]), Tone::Plain),
            (text(&d["domain"]), Tone::Plain),
            (text(&d["count"]), Tone::Plain),
            (text(&d["last_seen"]), Tone::Dim),
            (if allowed { "yes" } else { "no" }.into(), if allowed { Tone::Good } else { Tone::Warn }),
        ]);
    }
    output::write_stdout(&table.render(output::stdout_colour()));
    eprintln!("allow one with: latchgate egress allow ACTION DOMAIN");
    Ok(Exit::Ok)
}

fn edit(config: &Path, operator: &OperatorArgs, args: &EgressEditArgs, allow: bool) -> Result<Exit, Failure> {
    let mut session = AdminSession::connect(config, operator)?;
    let path = if allow { "/v1/admin/egress/allow" } else { "/v1/admin/egress/disallow" };
    let doc = session.post(path, &serde_json::json!({"action_id": args.action_id, "domain": args.host}))?;
    if args.json {
        output::print_json(&doc);
    } else {
        let verb = match (allow, doc["changed"] == true) {
            (true, true) => "allowed",
            (false, true) => "withdrew",
            (_, false) => "unchanged:",
        };
        output::write_stdout(&format!(
            "{verb} {} for {} (policy {}); the executor still lets a call reach only its grant's sinks\n",
            output::sanitize(&args.host),
            output::sanitize(&args.action_id),
            output::sanitize(doc["policy_version"].as_str().unwrap_or("")),
        ));
    }
    Ok(Exit::Ok)
}

fn squid_config(config: &Path, args: SquidConfigArgs) -> ExitCode {
    let cfg = match LoadedConfig::load(config) {
        Ok(cfg) => cfg,
        Err(e) => return crate::fail(e.code(), &e),
    };
    let registry = match Registry::load(&cfg.manifests_dir()) {
        Ok(registry) => registry,
        Err(errors) => {
            for e in &errors {
                eprintln!("latchgate: {e}");
            }
            let summary = format!("{} manifest error(s) in {}", errors.len(), cfg.manifests_dir().display());
            return crate::fail("manifest_invalid", &summary);
        }
    };
    let listen = match args.listen {
        Some(listen) => listen,
        None => match squid_listen_address(cfg.config.egress.proxy_url.as_deref()) {
            Ok(listen) => listen,
            Err(message) => return crate::fail("config_invalid", &message),
        },
    };
    let egress = &cfg.config.egress;
    if !egress.allow_private_destinations.is_empty() {
        eprintln!(
            "latchgate: WARNING: egress.allow_private_destinations is set (TEST ONLY): the proxy will reach {:?}",
            egress.allow_private_destinations
        );
    }
    let proxied: Vec<&str> = registry
        .iter()
        .filter(|a| a.manifest().egress.profile == latchgate_core::action::EgressProfile::ProxyAllowlist)
        .map(|a| a.id())
        .collect();
    let plan = SquidPlan {
        listen,
        allowed_domains: proxy_allowlist_domains(registry.iter().map(|a| &a.manifest().egress)),
        state_dir: args.state_dir.unwrap_or_else(|| args.out.join("state")),
        extra_ports: egress.extra_ports.clone(),
        allow_private_destinations: egress.allow_private_destinations.clone(),
    };
    let files = match write_squid_files(&plan, &args.out) {
        Ok(files) => files,
        Err(e) => return crate::fail(e.code(), &e),
    };
    if args.json {
        let report = serde_json::json!({
            "config": files.config,
            "allowlist": files.allowlist,
            "state_dir": files.state_dir,
            "listen": plan.listen.to_string(),
            "entries": files.entries,
            "actions": proxied,
        });
        println!("{report:#}");
    } else {
        println!("wrote {}", files.config.display());
        println!(
            "wrote {} ({} entries from {} actions)",
            files.allowlist.display(),
            files.entries.len(),
            proxied.len()
        );
        println!("squid state dir {} (must be writable by Squid's user)", files.state_dir.display());
        println!("run: squid -N -f {}", files.config.display());
    }
    ExitCode::SUCCESS
}

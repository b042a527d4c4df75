//! `egress.*`: the egress proxy answers HTTP; without one, every action whose
//! egress relies on a proxy allowlist is named (it runs on the executor's own
//! checks and the kernel's port rules only).

use std::time::Duration;

use latchgate_core::manifest::Registry;
use latchgate_core::production::egress_warnings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Check, Context};

const PROXY_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn checks(ctx: &Context) -> Vec<Check> {
    let Some(cfg) = &ctx.cfg else { return Vec::new() };
    let Some(proxy) = &cfg.config.egress.proxy_url else {
        let warnings = Registry::load(&cfg.manifests_dir()).map(|r| egress_warnings(cfg, &r)).unwrap_or_default();
        if warnings.is_empty() {
            return vec![Check::skip("egress.proxy", "no egress proxy configured, and no action relies on one")];
        }
        return warnings
            .into_iter()
            .map(|w| {
                Check::warn(
                    "egress.proxy",
                    w,
                    "set egress.proxy_url to the egress proxy (latchgate egress squid-config)",
                )
            })
            .collect();
    };
    let Some((host, port)) =
        url::Url::parse(proxy).ok().and_then(|u| Some((u.host_str()?.to_string(), u.port_or_known_default()?)))
    else {
        return vec![Check::error(
            "egress.proxy",
            format!("egress.proxy_url {proxy} has no host:port"),
            "set http://host:port",
        )];
    };
    match tokio::time::timeout(PROXY_TIMEOUT, probe(&host, port)).await {
        Ok(Ok(status)) => vec![Check::ok(
            "egress.proxy",
            format!("egress proxy {host}:{port} answers HTTP ({status} for a probe request)"),
        )],
        Ok(Err(e)) => vec![Check::error(
            "egress.proxy",
            format!("egress proxy {host}:{port}: {e}"),
            "start the proxy (squid), or correct egress.proxy_url",
        )],
        Err(_) => vec![Check::error(
            "egress.proxy",
            format!("egress proxy {host}:{port} did not answer within {PROXY_TIMEOUT:?}"),
            "start the proxy (squid), or correct egress.proxy_url",
        )],
    }
}

/// A proxied GET for a name that cannot exist: any HTTP status line means the proxy works.
async fn probe(host: &str, port: u16) -> Result<String, String> {
    let mut stream = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| format!("cannot connect: {e}"))?;
    let request =
        "GET http://latchgate-doctor.invalid/ HTTP/1.1\r\nHost: latchgate-doctor.invalid\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("cannot send: {e}"))?;
    let mut head = vec![0u8; 256];
    let n = stream.read(&mut head).await.map_err(|e| format!("no answer: {e}"))?;
    let line = String::from_utf8_lossy(&head[..n]).lines().next().unwrap_or_default().to_string();
    match line.split_whitespace().collect::<Vec<_>>().as_slice() {
        [version, status, ..] if version.starts_with("HTTP/1.") => Ok(format!("HTTP {status}")),
        _ => Err(format!("answered something that is not HTTP: {:?}", line.chars().take(40).collect::<String>())),
    }
}

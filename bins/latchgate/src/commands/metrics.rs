//! `latchgate metrics`: `GET /metrics` over the admin socket, as an operator
//! (what a Prometheus sidecar that can sign DPoP proofs scrapes). Prints the
//! exposition text as the gate sent it, or `--json`: the same samples
//! parsed by `prometheus-parse` (one object per series, histograms with
//! their buckets).

use std::path::Path;
use std::process::ExitCode;

use serde_json::{Map, Value, json};

use super::admin_client::{AdminSession, OperatorArgs};
use super::output::{self, Exit, Failure};

#[derive(clap::Args)]
pub struct MetricsArgs {
    /// Print the samples as JSON instead of the Prometheus text.
    #[arg(long)]
    json: bool,
}

pub fn run(config: &Path, operator: &OperatorArgs, args: MetricsArgs) -> ExitCode {
    output::finish(args.json, metrics(config, operator, &args))
}

fn metrics(config: &Path, operator: &OperatorArgs, args: &MetricsArgs) -> Result<Exit, Failure> {
    let mut session = AdminSession::connect(config, operator)?;
    let bytes = session.get_bytes("/metrics")?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Failure::new("unexpected_response", "the gate's metrics are not UTF-8 text", "see the gate's log")
    })?;
    if args.json {
        output::print_json(&as_json(&text)?);
    } else {
        // Label values are registry ids and fixed codes; escaping keeps a
        // tampered manifest from steering the operator's terminal anyway.
        let lines: Vec<String> = text.lines().map(output::sanitize).collect();
        output::write_stdout(&format!("{}\n", lines.join("\n")));
    }
    Ok(Exit::Ok)
}

/// `{"samples": [{metric, type, labels, value | buckets+sum+count}], "help": {metric: text}}`.
pub fn as_json(text: &str) -> Result<Value, Failure> {
    use prometheus_parse::{Scrape, Value as Sampled};
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = Scrape::parse(lines).map_err(|e| {
        Failure::new("unexpected_response", format!("the gate's metrics do not parse: {e}"), "see the gate's log")
    })?;
    let mut samples: Vec<Value> = scrape
        .samples
        .iter()
        .map(|sample| {
            let labels: Map<String, Value> =
                sample.labels.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            let mut entry = json!({"metric": sample.metric, "labels": labels});
            let (kind, value) = match &sample.value {
                Sampled::Counter(v) => ("counter", json!(v)),
                Sampled::Gauge(v) => ("gauge", json!(v)),
                Sampled::Untyped(v) => ("untyped", json!(v)),
                Sampled::Histogram(buckets) => {
                    let buckets: Vec<Value> =
                        buckets.iter().map(|b| json!({"le": b.less_than, "count": b.count})).collect();
                    entry["buckets"] = buckets.into();
                    ("histogram", Value::Null)
                }
                Sampled::Summary(quantiles) => {
                    let quantiles: Vec<Value> =
                        quantiles.iter().map(|q| json!({"quantile": q.quantile, "value": q.count})).collect();
                    entry["quantiles"] = quantiles.into();
                    ("summary", Value::Null)
                }
            };
            entry["type"] = kind.into();
            if !value.is_null() {
                entry["value"] = value;
            }
            entry
        })
        .collect();
    fold_sums_and_counts(&mut samples);
    // The parser keeps histograms apart from the other samples: one stable order for scripts.
    samples.sort_by_key(|s| (s["metric"].as_str().unwrap_or("").to_string(), s["labels"].to_string()));
    let help: Map<String, Value> = scrape.docs.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    Ok(json!({"samples": samples, "help": help}))
}

/// The parser leaves a histogram's `NAME_sum` and `NAME_count` as untyped
/// samples of their own: move them into the histogram's entry as `sum` and
/// `count`.
fn fold_sums_and_counts(samples: &mut Vec<Value>) {
    let mut folded = vec![false; samples.len()];
    for index in 0..samples.len() {
        let sample = &samples[index];
        let Some(name) = sample["metric"].as_str().filter(|_| sample["type"] == "untyped") else { continue };
        let Some((base, field)) = [("_sum", "sum"), ("_count", "count")]
            .into_iter()
            .find_map(|(suffix, field)| Some((name.strip_suffix(suffix)?.to_string(), field)))
        else {
            continue;
        };
        let (labels, value) = (sample["labels"].clone(), sample["value"].clone());
        let histogram = samples
            .iter_mut()
            .find(|s| s["type"] == "histogram" && s["metric"] == base.as_str() && s["labels"] == labels);
        if let Some(histogram) = histogram {
            histogram[field] = value;
            folded[index] = true;
        }
    }
    let mut folded = folded.into_iter();
    samples.retain(|_| !folded.next().unwrap_or(false));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_text_becomes_one_object_per_series() {
        let text = "# HELP a_total calls\n# TYPE a_total counter\na_total{action=\"x\",decision=\"denied\"} 2\n\
                    # HELP d seconds\n# TYPE d histogram\nd_bucket{action=\"x\",le=\"0.5\"} 1\n\
                    d_bucket{action=\"x\",le=\"+Inf\"} 1\nd_sum{action=\"x\"} 0.2\nd_count{action=\"x\"} 1\n";
        let doc = as_json(text).unwrap();
        let samples = doc["samples"].as_array().unwrap();
        let calls = samples.iter().find(|s| s["metric"] == "a_total").unwrap();
        assert_eq!((calls["type"].as_str(), calls["value"].as_f64()), (Some("counter"), Some(2.0)));
        assert_eq!(calls["labels"]["decision"], "denied");
        let histogram = samples.iter().find(|s| s["metric"] == "d").unwrap();
        assert_eq!(histogram["buckets"].as_array().unwrap().len(), 2);
        assert_eq!((histogram["sum"].as_f64(), histogram["count"].as_f64()), (Some(0.2), Some(1.0)));
        assert!(!samples.iter().any(|s| s["metric"] == "d_sum" || s["metric"] == "d_count"), "{doc}");
        assert_eq!(doc["help"]["a_total"], "calls");
    }
}

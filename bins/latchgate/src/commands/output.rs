//! What the operator commands print and how they exit, in one place: exit
//! codes, JSON on stdout, aligned tables (coloured only on a terminal), a
//! progress line on stderr, and failures as one line of error plus one line of
//! remediation.
//!
//! Everything a command prints from the ledger or a receipt came from
//! somewhere else (an agent chose the principal, an attacker may have edited
//! the database), so human output passes through [`sanitize`]: control
//! characters are escaped and can never move the cursor or recolour the
//! operator's terminal. JSON output is escaped by the encoder.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;

/// How an operator command ended. Scripts rely on these numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Done; for checks: everything verified.
    Ok,
    /// The command could not do its job (config, file, permission, usage).
    Error,
    /// The evidence was checked and is not intact (`verify`, `receipt verify`).
    Invalid,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Error => 1,
            Exit::Invalid => 2,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// A command that could not do its job: a stable code, what happened, and
/// the one thing to try next.
#[derive(Debug)]
pub struct Failure {
    pub code: String,
    pub message: String,
    pub remediation: String,
}

impl Failure {
    pub fn new(code: impl Into<String>, message: impl ToString, remediation: impl Into<String>) -> Failure {
        Failure { code: code.into(), message: message.to_string(), remediation: remediation.into() }
    }

    /// Prints the failure (JSON on stdout, or two lines on stderr) and returns [`Exit::Error`].
    pub fn report(&self, json: bool) -> ExitCode {
        tracing::debug!(code = %self.code, error = %self.message, "command failed");
        if json {
            print_json(&serde_json::json!({
                "ok": false,
                "error": {"code": self.code, "message": self.message, "remediation": self.remediation},
            }));
        } else {
            eprintln!("latchgate: {} [{}]", sanitize(&self.message), self.code);
            eprintln!("  fix: {}", sanitize(&self.remediation));
        }
        Exit::Error.into()
    }
}

impl From<latchgate_core::config::ConfigError> for Failure {
    fn from(e: latchgate_core::config::ConfigError) -> Failure {
        use latchgate_core::config::ConfigError;
        let remediation = match &e {
            ConfigError::Read { .. } => {
                "pass --config FILE or set LATCHGATE_CONFIG (`latchgate up` writes a default latchgate.toml)"
            }
            ConfigError::Parse { .. } | ConfigError::Invalid { .. } => "correct the named field in latchgate.toml",
        };
        Failure::new(e.code(), &e, remediation)
    }
}

/// Runs a command body and turns its result into the process exit status.
pub fn finish(json: bool, result: Result<Exit, Failure>) -> ExitCode {
    match result {
        Ok(exit) => exit.into(),
        Err(failure) => failure.report(json),
    }
}

/// Writes `text` to stdout. A closed pipe (`latchgate audit | head`) ends the
/// output quietly instead of panicking like `println!`.
pub fn write_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Pretty JSON document plus newline on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(mut text) => {
            text.push('\n');
            write_stdout(&text);
        }
        Err(e) => eprintln!("latchgate: cannot encode output: {e} [output_encoding_failed]"),
    }
}

/// One compact JSON object per line (JSONL).
pub fn print_json_lines<T: Serialize>(values: &[T]) -> Result<(), Failure> {
    let mut text = String::new();
    for value in values {
        let line = serde_json::to_string(value)
            .map_err(|e| Failure::new("output_encoding_failed", e, "report this as a bug"))?;
        text.push_str(&line);
        text.push('\n');
    }
    write_stdout(&text);
    Ok(())
}

/// A JSON value from the gate as table text: strings bare, `null` empty,
/// anything else in its JSON form (sanitized later by [`Table`]).
pub fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON array from the gate as `a, b, c` (anything else: empty).
pub fn list_text(v: &serde_json::Value) -> String {
    v.as_array().map(|items| items.iter().map(value_text).collect::<Vec<_>>().join(", ")).unwrap_or_default()
}

/// Escapes control characters (ANSI escapes, newlines, carriage returns)
/// in untrusted text before it reaches a terminal.
pub fn sanitize(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// Colour is used only when stdout is a terminal and `NO_COLOR` is unset.
pub fn stdout_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// How a value is highlighted on a colour terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Plain,
    Good,
    Bad,
    Warn,
    Dim,
}

impl Tone {
    fn ansi(self) -> Option<&'static str> {
        match self {
            Tone::Plain => None,
            Tone::Good => Some("\x1b[32m"),
            Tone::Bad => Some("\x1b[31m"),
            Tone::Warn => Some("\x1b[33m"),
            Tone::Dim => Some("\x1b[2m"),
        }
    }

    /// `text` in this tone when `colour`, else unchanged.
    pub fn paint(self, text: &str, colour: bool) -> String {
        match self.ansi() {
            Some(start) if colour => format!("{start}{text}\x1b[0m"),
            _ => text.to_owned(),
        }
    }
}

/// A table with left-aligned columns separated by two spaces; cells are
/// sanitized, empty cells show as `-`.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<(String, Tone)>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<(String, Tone)>) {
        let cells = cells
            .into_iter()
            .map(|(text, tone)| if text.is_empty() { ("-".to_owned(), Tone::Dim) } else { (sanitize(&text), tone) })
            .collect();
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self, colour: bool) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, (text, _)) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(text.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: Vec<(&str, Tone)>| {
            let last = cells.len().saturating_sub(1);
            for (i, (text, tone)) in cells.into_iter().enumerate() {
                out.push_str(&tone.paint(text, colour));
                if i < last {
                    let pad = widths[i] - text.chars().count() + 2;
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        };
        line(&mut out, self.headers.iter().map(|h| (*h, Tone::Dim)).collect());
        for row in &self.rows {
            line(&mut out, row.iter().take(columns).map(|(t, tone)| (t.as_str(), *tone)).collect());
        }
        out
    }
}

/// A progress line on stderr (`label 1200/50000 (2%)`), redrawn at most ten
/// times a second, shown only when stderr is a terminal and never in JSON mode.
pub struct Progress {
    label: &'static str,
    enabled: bool,
    last_draw: Option<Instant>,
    drawn: bool,
}

impl Progress {
    pub fn new(label: &'static str, json: bool) -> Progress {
        Progress { label, enabled: !json && std::io::stderr().is_terminal(), last_draw: None, drawn: false }
    }

    pub fn update(&mut self, done: u64, total: u64) {
        if !self.enabled || self.last_draw.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) {
            return;
        }
        self.last_draw = Some(Instant::now());
        let line = match (done.min(total) * 100).checked_div(total) {
            Some(percent) => format!("{} {done}/{total} ({percent}%)", self.label),
            None => format!("{} {done}", self.label),
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}").and_then(|()| err.flush());
        self.drawn = true;
    }

    /// Clears the line so the result is printed on a clean terminal.
    pub fn finish(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K").and_then(|()| err.flush());
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_from_the_ledger_never_reach_the_terminal() {
        assert_eq!(sanitize("agent\x1b[2Jx\n"), "agent\\u{1b}[2Jx\\n");
        assert_eq!(sanitize("plain-agent"), "plain-agent");
    }

    #[test]
    fn table_columns_are_aligned_without_colour() {
        let mut table = Table::new(&["A", "LONG"]);
        table.row(vec![("xyz".into(), Tone::Good), ("1".into(), Tone::Plain)]);
        table.row(vec![(String::new(), Tone::Plain), ("2".into(), Tone::Plain)]);
        assert_eq!(table.render(false), "A    LONG\nxyz  1\n-    2\n");
        assert!(table.render(true).contains("\x1b[32mxyz\x1b[0m"));
    }

    #[test]
    fn exit_codes_are_stable() {
        assert_eq!((Exit::Ok.code(), Exit::Error.code(), Exit::Invalid.code()), (0, 1, 2));
    }
}

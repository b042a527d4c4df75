//! The provider modules this executor can run: every `.wasm` in the providers
//! directory, digest-checked before a single byte reaches the compiler,
//! compiled and pre-linked at start so that nothing is compiled after the
//! process seals itself.

use crate::host::{self, CallState, ProviderBindingsPre};
use latchgate_core::action::HostImport;
use latchgate_core::jcs::sha256_tagged;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read providers directory {path}: {source}")]
    ReadDir { path: PathBuf, source: std::io::Error },
    #[error("cannot read module {path}: {source}")]
    ReadModule { path: PathBuf, source: std::io::Error },
    #[error("module {file} is not in the expected digest list")]
    UnexpectedModule { file: String },
    #[error("module {file} has digest {actual}, expected {expected}")]
    DigestMismatch { file: String, expected: String, actual: String },
    #[error("expected module {file} is missing")]
    MissingModule { file: String },
    #[error("digest list line {line} is malformed")]
    MalformedDigestList { line: usize },
    #[error("module {file} does not compile: {reason}")]
    Compile { file: String, reason: String },
    #[error("module {file} imports `{import}`, which no host provides")]
    UnknownImport { file: String, import: String },
    #[error("module {file} does not link: {reason}")]
    Link { file: String, reason: String },
}

impl RegistryError {
    pub fn code(&self) -> &'static str {
        match self {
            RegistryError::ReadDir { .. } => "providers_dir_unreadable",
            RegistryError::ReadModule { .. } => "module_unreadable",
            RegistryError::UnexpectedModule { .. } => "module_unexpected",
            RegistryError::DigestMismatch { .. } => "module_digest_mismatch",
            RegistryError::MissingModule { .. } => "module_missing",
            RegistryError::MalformedDigestList { .. } => "digest_list_malformed",
            RegistryError::Compile { .. } => "module_compile_failed",
            RegistryError::UnknownImport { .. } => "module_import_unknown",
            RegistryError::Link { .. } => "module_link_failed",
        }
    }
}

/// File name → `sha256:<hex>` that file must have.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpectedDigests(BTreeMap<String, String>);

impl ExpectedDigests {
    pub fn from_pairs<I, A, B>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (A, B)>,
        A: Into<String>,
        B: Into<String>,
    {
        ExpectedDigests(pairs.into_iter().map(|(f, d)| (f.into(), d.into())).collect())
    }

    /// Parses `providers/digests.txt`: `sha256:<hex>  <file>.wasm` per line, `#` comments.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let mut map = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(digest), Some(file), None) if is_digest(digest) && file.ends_with(".wasm") => {
                    map.insert(file.to_string(), digest.to_string());
                }
                _ => return Err(RegistryError::MalformedDigestList { line: i + 1 }),
            }
        }
        Ok(ExpectedDigests(map))
    }

    /// Keeps only the listed files (e.g. production drops the `hostile_*` fixtures).
    pub fn retain(mut self, keep: impl Fn(&str) -> bool) -> Self {
        self.0.retain(|file, _| keep(file));
        self
    }

    pub fn digest_of(&self, file: &str) -> Option<&str> {
        self.0.get(file).map(String::as_str)
    }
}

fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// One compiled, pre-linked provider.
pub(crate) struct LoadedModule {
    pub file: String,
    /// Pre-linked, with the `execute` export already looked up.
    pub pre: ProviderBindingsPre<CallState>,
    /// Host interfaces the component imports (types-only interfaces excluded).
    pub imports: BTreeSet<HostImport>,
}

pub(crate) struct ModuleRegistry {
    by_digest: HashMap<String, LoadedModule>,
}

impl ModuleRegistry {
    /// Reads every listed module, refuses any digest mismatch, unlisted or
    /// missing file, then compiles and pre-links them all.
    pub fn load(engine: &Engine, dir: &Path, expected: &ExpectedDigests) -> Result<Self, RegistryError> {
        let entries = std::fs::read_dir(dir).map_err(|source| RegistryError::ReadDir { path: dir.into(), source })?;
        let mut files = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|source| RegistryError::ReadDir { path: dir.into(), source })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".wasm") {
                files.insert(name, entry.path());
            }
        }
        for file in expected.0.keys() {
            if !files.contains_key(file) {
                return Err(RegistryError::MissingModule { file: file.clone() });
            }
        }
        let mut verified = Vec::new();
        for (file, path) in files {
            let Some(expected_digest) = expected.digest_of(&file) else {
                return Err(RegistryError::UnexpectedModule { file });
            };
            let bytes =
                std::fs::read(&path).map_err(|source| RegistryError::ReadModule { path: path.clone(), source })?;
            let actual = sha256_tagged(&bytes);
            if actual != expected_digest {
                return Err(RegistryError::DigestMismatch { file, expected: expected_digest.into(), actual });
            }
            verified.push((file, actual, bytes));
        }
        let mut linker = Linker::<CallState>::new(engine);
        host::add_to_linker(&mut linker)
            .map_err(|e| RegistryError::Link { file: "<host>".into(), reason: e.to_string() })?;
        let mut by_digest = HashMap::new();
        for (file, digest, bytes) in verified {
            let component = Component::new(engine, &bytes)
                .map_err(|e| RegistryError::Compile { file: file.clone(), reason: format!("{e:#}") })?;
            let imports = component_imports(engine, &component, &file)?;
            let pre = linker
                .instantiate_pre(&component)
                .and_then(ProviderBindingsPre::new)
                .map_err(|e| RegistryError::Link { file: file.clone(), reason: format!("{e:#}") })?;
            tracing::info!(file = %file, digest = %digest, imports = ?imports, "provider compiled");
            by_digest.insert(digest, LoadedModule { file, pre, imports });
        }
        Ok(ModuleRegistry { by_digest })
    }

    pub fn get(&self, digest: &str) -> Option<&LoadedModule> {
        self.by_digest.get(digest)
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }
}

/// The component's own import list, read from its type: what it would use,
/// whatever the linker offers.
fn component_imports(
    engine: &Engine,
    component: &Component,
    file: &str,
) -> Result<BTreeSet<HostImport>, RegistryError> {
    let mut imports = BTreeSet::new();
    for (name, _) in component.component_type().imports(engine) {
        match host::import_for_name(name) {
            Some(host::ImportKind::Host(import)) => {
                imports.insert(import);
            }
            Some(host::ImportKind::TypesOnly) => {}
            None => return Err(RegistryError::UnknownImport { file: file.into(), import: name.into() }),
        }
    }
    Ok(imports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_list_parses_and_rejects_garbage() {
        let d = format!("# pins\nsha256:{}  http_api.wasm\n", "a".repeat(64));
        let parsed = ExpectedDigests::parse(&d).unwrap();
        assert_eq!(parsed.digest_of("http_api.wasm"), Some(format!("sha256:{}", "a".repeat(64)).as_str()));
        assert!(ExpectedDigests::parse("sha256:abc  x.wasm").is_err());
        assert!(ExpectedDigests::parse(&format!("sha256:{}  x.so", "a".repeat(64))).is_err());
    }
}

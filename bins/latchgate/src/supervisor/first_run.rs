//! First run of `latchgate up`: write a commented default config and create
//! the state, key and runtime directories, without asking anything.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

const TEMPLATE: &str = include_str!("../../../../deploy/config/latchgate.toml");

#[derive(Debug, thiserror::Error)]
pub enum FirstRunError {
    #[error("cannot write default config {path}: {source}")]
    WriteConfig { path: PathBuf, source: std::io::Error },
    #[error("cannot create directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot find the data directories (manifests/, policies/, providers/); set LATCHGATE_DATA_DIR")]
    NoDataDir,
}

impl FirstRunError {
    pub fn code(&self) -> &'static str {
        match self {
            FirstRunError::WriteConfig { .. } => "config_write_failed",
            FirstRunError::CreateDir { .. } => "dir_create_failed",
            FirstRunError::NoDataDir => "data_dir_not_found",
        }
    }
}

/// Where manifests/, policies/ and providers/ are: `LATCHGATE_DATA_DIR`, the
/// current directory (a checkout), or the installed share directory.
fn data_dir() -> Result<PathBuf, FirstRunError> {
    let candidates = std::env::var_os("LATCHGATE_DATA_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::current_dir().ok())
        .chain([PathBuf::from("/usr/share/latchgate")]);
    for dir in candidates {
        if dir.join("manifests").is_dir() && dir.join("policies").is_dir() {
            return std::path::absolute(&dir).map_err(|_| FirstRunError::NoDataDir);
        }
    }
    Err(FirstRunError::NoDataDir)
}

/// Write the default config at `path` if there is none. Returns whether it wrote one.
pub fn ensure_config(path: &Path) -> Result<bool, FirstRunError> {
    if path.exists() {
        return Ok(false);
    }
    let data = data_dir()?;
    let text = TEMPLATE
        .replace("@MANIFESTS_DIR@", &data.join("manifests").display().to_string())
        .replace("@POLICIES_DIR@", &data.join("policies").display().to_string())
        .replace("@PROVIDERS_DIR@", &data.join("providers").display().to_string())
        .replace("@PROFILES_DIR@", &data.join("sandbox-profiles").display().to_string());
    let write_err = |source| FirstRunError::WriteConfig { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    // create_new: never clobber a config another process wrote in the meantime.
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(write_err)?;
    file.write_all(text.as_bytes()).map_err(write_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640)).map_err(write_err)?;
    Ok(true)
}

/// Create `path` (and parents) with `mode` if missing.
pub fn ensure_dir(path: &Path, mode: u32) -> Result<(), FirstRunError> {
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|source| FirstRunError::CreateDir { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_once_filled() {
        let text = TEMPLATE.replace('@', "");
        latchgate_core::config::LoadedConfig::from_str(Path::new("/tmp/x/latchgate.toml"), &text).unwrap();
    }
}

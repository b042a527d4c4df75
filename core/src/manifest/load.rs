//! Reading manifests from disk: YAML → typed [`Manifest`] (with the field path
//! of any type error), schema sources resolved inside the manifests directory,
//! rules checked, schemas compiled.

use super::error::ManifestError;
use super::model::{Manifest, SchemaSource};
use super::registry::RegisteredAction;
use super::schema::CompiledSchema;
use super::validate::{self, RequestShape};
use serde_json::{Value, json};
use std::path::{Component, Path, PathBuf};

/// Manifests are small; anything larger is a mistake or an attack on the loader.
pub const MAX_MANIFEST_BYTES: u64 = 256 * 1024;
pub const MAX_SCHEMA_FILE_BYTES: u64 = 256 * 1024;

/// `*.yaml` / `*.yml` files directly in `dir`, sorted so errors come out in a stable order.
pub fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ManifestError::DirUnreadable { dir: dir.to_path_buf(), message: e.to_string() })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| ManifestError::DirUnreadable { dir: dir.to_path_buf(), message: e.to_string() })?;
        let path = entry.path();
        let is_yaml = path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml");
        if is_yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Parse one manifest's text. `file` is only used to name it in errors.
pub fn parse_manifest(file: &Path, text: &str) -> Result<Manifest, ManifestError> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "(document)".to_owned() } else { path };
        ManifestError::Parse { file: file.to_path_buf(), field, message: e.into_inner().to_string() }
    })
}

/// Load, check and compile one manifest file. `manifests_dir` bounds where
/// schema paths may point.
pub fn load_action(file: &Path, manifests_dir: &Path) -> Result<RegisteredAction, Vec<ManifestError>> {
    let text = read_bounded(file, MAX_MANIFEST_BYTES)
        .map_err(|message| vec![ManifestError::Unreadable { file: file.to_path_buf(), message }])?;
    let manifest = parse_manifest(file, &text).map_err(|e| vec![e])?;
    let mut errors = Vec::new();

    let request_schema = resolve_schema(file, manifests_dir, "io.request_schema", &manifest.io.request_schema)
        .map_err(|e| errors.push(e))
        .ok();
    let response_schema = match &manifest.io.response_schema {
        Some(source) => {
            resolve_schema(file, manifests_dir, "io.response_schema", source).map_err(|e| errors.push(e)).ok()
        }
        None => None,
    };

    let shape = request_schema.as_ref().map(RequestShape::of);
    for violation in validate::check(&manifest, shape.as_ref()) {
        errors.push(ManifestError::Invalid {
            file: file.to_path_buf(),
            field: violation.field,
            message: violation.message,
        });
    }

    let compile = |field: &str, schema: Value, max_bytes: usize| {
        CompiledSchema::compile(schema, max_bytes).map_err(|message| ManifestError::Schema {
            file: file.to_path_buf(),
            field: field.to_owned(),
            message,
        })
    };
    let request = request_schema
        .and_then(|s| compile("io.request_schema", s, manifest.io.max_request_bytes).map_err(|e| errors.push(e)).ok());
    let response_declared = manifest.io.response_schema.is_some();
    // Without a declared schema the response still gets the depth and size limits.
    let response =
        compile("io.response_schema", response_schema.unwrap_or_else(|| json!({})), manifest.io.max_response_bytes)
            .map_err(|e| errors.push(e))
            .ok();

    match (request, response) {
        (Some(request), Some(response)) if errors.is_empty() => {
            Ok(RegisteredAction::new(manifest, file.to_path_buf(), request, response, response_declared))
        }
        _ => Err(errors),
    }
}

/// An inline schema as is, or a path relative to the manifests directory that
/// must stay inside it (no absolute paths, no `..`).
fn resolve_schema(
    file: &Path,
    manifests_dir: &Path,
    field: &str,
    source: &SchemaSource,
) -> Result<Value, ManifestError> {
    let invalid =
        |message: String| ManifestError::Schema { file: file.to_path_buf(), field: field.to_owned(), message };
    match source {
        SchemaSource::Inline(map) => Ok(Value::Object(map.clone())),
        SchemaSource::Path(rel) => {
            let rel_path = Path::new(rel);
            let confined = !rel.is_empty() && rel_path.components().all(|c| matches!(c, Component::Normal(_)));
            if !confined {
                return Err(invalid(format!("`{rel}` must be a relative path inside the manifests directory")));
            }
            let path = manifests_dir.join(rel_path);
            let text =
                read_bounded(&path, MAX_SCHEMA_FILE_BYTES).map_err(|m| invalid(format!("{}: {m}", path.display())))?;
            serde_json::from_str(&text).map_err(|e| invalid(format!("{}: not JSON: {e}", path.display())))
        }
    }
}

fn read_bounded(path: &Path, limit: u64) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > limit {
        return Err(format!("{} bytes, the limit is {limit}", meta.len()));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

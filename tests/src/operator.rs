//! Operators for the end-to-end tests: a P-256 key and an api key, the config
//! lines that name them, clients over the admin socket, and gate homes with
//! private copies of what the tests edit (manifests, policies, an fs root).

use crate::GateDir;
use latchgate_client::{DpopKey, OperatorClient};
use latchgate_core::jose::generate_es256_pkcs8;
use std::path::{Path, PathBuf};

pub const BASE: &str = "http://localhost:3000";

/// One operator credential and its private key.
pub struct TestOperator {
    pub name: String,
    pub api_key: String,
    pub pkcs8: Vec<u8>,
    pub jkt: String,
}

impl TestOperator {
    pub fn new(name: &str) -> TestOperator {
        let pkcs8 = generate_es256_pkcs8().expect("operator key");
        let jkt = DpopKey::from_pkcs8(&pkcs8).expect("key").thumbprint().to_string();
        TestOperator { name: name.into(), api_key: format!("lgop_test_{}", uuid::Uuid::new_v4().simple()), pkcs8, jkt }
    }

    pub fn key(&self) -> DpopKey {
        DpopKey::from_pkcs8(&self.pkcs8).expect("key")
    }

    /// `[operator_credentials.NAME]` with this api key bound to this key.
    pub fn config(&self) -> String {
        format!("[operator_credentials.{}]\napi_key = \"{}\"\ndpop_jkt = \"{}\"\n", self.name, self.api_key, self.jkt)
    }

    pub async fn client(&self, dir: &GateDir) -> OperatorClient {
        OperatorClient::connect(dir.admin_socket(), BASE, &self.api_key, self.key()).await.expect("admin socket")
    }
}

/// Copy `from` into `to` recursively (regular files and directories only).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Make `path` (and, for a directory, what is in it) writable by the gate's
/// own users, which run under other uids when the tests run as root.
pub fn open_up(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).expect("metadata");
    let mode = if meta.is_dir() { 0o777 } else { 0o666 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).expect("read dir").flatten() {
            open_up(&entry.path());
        }
    }
}

/// Private copies the test may change: manifests, policies (writable by the
/// broker, for admin policy edits) and an fs root (writable by the executor).
pub struct EditableHome {
    pub manifests: PathBuf,
    pub policies: PathBuf,
    pub fs_root: PathBuf,
}

impl EditableHome {
    pub fn create(dir: &GateDir) -> EditableHome {
        let repo = crate::repo_root();
        let manifests = dir.root.join("manifests");
        copy_tree(&repo.join("manifests"), &manifests);
        let policies = dir.copy_policies();
        open_up(&policies);
        let fs_root = dir.root.join("fsroot");
        std::fs::create_dir_all(&fs_root).expect("fs root");
        open_up(&fs_root);
        EditableHome { manifests, policies, fs_root }
    }

    /// The top-level config lines pointing at the copies.
    pub fn top_config(&self) -> String {
        format!(
            "manifests_dir = \"{}\"\npolicies_dir = \"{}\"\nfs_root = \"{}\"",
            self.manifests.display(),
            self.policies.display(),
            self.fs_root.display()
        )
    }
}

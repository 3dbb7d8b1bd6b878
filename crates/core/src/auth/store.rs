//! The token store: token records keyed by id, holding hashes only, and
//! persisted to one JSON file written atomically with mode 0600.
//!
//! The file is input like any other: its size and record count are capped,
//! and every record is checked when it is loaded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sensegate_proto::MessageLimits;
use sensegate_proto::envelope::{check_name, check_pattern};
use serde::{Deserialize, Serialize};
use subtle::Choice;

use super::token::{self, NewToken, SecretToken, TokenHash};
use super::{AuthError, Principal, Role};
use crate::file::CappedReadError;
use crate::name::Name;
use crate::pattern::Pattern;

/// Largest token file the daemon reads.
pub const MAX_FILE_BYTES: u64 = 8 << 20;

/// One token as stored: never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Public id.
    pub id: String,
    /// Human name (e.g. who holds it).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Sensors it may touch.
    pub scope: Pattern,
    /// SHA-256 of the whole token.
    pub hash: TokenHash,
    /// Creation time, microseconds since the epoch.
    pub created_at_us: i64,
    /// Revoked tokens stay listed but never authenticate.
    pub revoked: bool,
}

impl TokenRecord {
    fn principal(&self) -> Principal {
        Principal {
            token_id: self.id.clone(),
            name: self.name.clone(),
            role: self.role,
            scope: self.scope.clone(),
        }
    }
}

/// Why the token store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenStoreError {
    /// Reading or writing the file failed.
    #[error("token store {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("token store {path} is {size} bytes, over the cap of {MAX_FILE_BYTES}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The file is not a valid store.
    #[error("token store {path} is invalid: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, without file contents.
        reason: String,
    },
    /// The store holds as many tokens as it may.
    #[error("the token store is full ({max} tokens)")]
    Full {
        /// The cap.
        max: usize,
    },
    /// A name or scope broke the wire rules.
    #[error("invalid {field}")]
    BadField {
        /// Which field.
        field: &'static str,
    },
    /// The random source failed.
    #[error(transparent)]
    Random(#[from] token::RandomError),
}

/// All tokens, in memory, with an optional backing file.
#[derive(Debug)]
pub struct TokenStore {
    by_id: HashMap<String, TokenRecord>,
    /// Compared against when a presented id is unknown, so both paths do the
    /// same work.
    dummy: TokenRecord,
    path: Option<PathBuf>,
    max_tokens: usize,
    /// The configured name and pattern caps every name and scope is
    /// checked against (at load and at creation).
    limits: MessageLimits,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRecord {
    id: String,
    name: String,
    role: Role,
    scope: String,
    sha256: String,
    created_at_us: i64,
    #[serde(default)]
    revoked: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    version: u32,
    tokens: Vec<FileRecord>,
}

impl TokenStore {
    /// An empty store kept in memory only.
    #[must_use]
    pub fn in_memory(max_tokens: usize, limits: MessageLimits) -> Self {
        Self {
            limits,
            by_id: HashMap::new(),
            dummy: dummy_record(),
            path: None,
            max_tokens,
        }
    }

    /// Opens the store at `path`, creating an empty one if it does not exist.
    ///
    /// # Errors
    /// [`TokenStoreError`] when the file cannot be read, is too large, or is not a
    /// valid store.
    pub fn open(
        path: &Path,
        max_tokens: usize,
        limits: MessageLimits,
    ) -> Result<Self, TokenStoreError> {
        let mut store = Self::in_memory(max_tokens, limits);
        store.path = Some(path.to_owned());
        let io = |source| TokenStoreError::Io {
            path: path.to_owned(),
            source,
        };
        let text = match crate::file::read_private(path, MAX_FILE_BYTES) {
            Ok(text) => text,
            Err(CappedReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                store.save()?;
                return Ok(store);
            }
            Err(CappedReadError::Io(e)) => return Err(io(e)),
            Err(CappedReadError::TooLarge { size }) => {
                return Err(TokenStoreError::TooLarge {
                    path: path.to_owned(),
                    size,
                });
            }
        };
        let invalid = |reason: String| TokenStoreError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let file: FileFormat = serde_json::from_str(&text).map_err(|e| {
            invalid(format!(
                "line {} column {}: {}",
                e.line(),
                e.column(),
                json_category(&e)
            ))
        })?;
        if file.version != 1 {
            return Err(invalid(format!("unknown version {}", file.version)));
        }
        if file.tokens.len() > max_tokens {
            return Err(invalid(format!(
                "{} tokens, over the cap of {max_tokens}",
                file.tokens.len()
            )));
        }
        for (i, r) in file.tokens.into_iter().enumerate() {
            let record = check_record(r, &limits)
                .map_err(|field| invalid(format!("token {i}: bad {field}")))?;
            if store.by_id.insert(record.id.clone(), record).is_some() {
                return Err(invalid(format!("token {i}: duplicate id")));
            }
        }
        Ok(store)
    }

    /// Creates a token and saves the store. The secret is returned once and
    /// kept nowhere.
    ///
    /// # Errors
    /// [`TokenStoreError`] when the store is full, a field is invalid, or saving
    /// fails (the token is then not created).
    pub fn create(
        &mut self,
        name: &str,
        role: Role,
        scope: &str,
        now_us: i64,
    ) -> Result<(TokenRecord, SecretToken), TokenStoreError> {
        let created = self.create_unsaved(name, role, scope, now_us)?;
        if let Err(e) = self.save() {
            self.by_id.remove(&created.0.id);
            return Err(e);
        }
        Ok(created)
    }

    /// Creates a token in memory only; the caller saves a
    /// [`TokenStore::snapshot`] and calls [`TokenStore::forget`] if that
    /// fails. So the slow part (writing and syncing the file) can run without
    /// the lock every authentication takes.
    ///
    /// # Errors
    /// [`TokenStoreError`] when the store is full or a field is invalid.
    pub fn create_unsaved(
        &mut self,
        name: &str,
        role: Role,
        scope: &str,
        now_us: i64,
    ) -> Result<(TokenRecord, SecretToken), TokenStoreError> {
        let name = Name::parse("name", name, &self.limits)
            .map_err(|_| TokenStoreError::BadField { field: "name" })?;
        let scope = Pattern::parse("scope", scope, &self.limits)
            .map_err(|_| TokenStoreError::BadField { field: "scope" })?;
        self.insert_unsaved(&name, role, &scope, now_us)
    }

    /// As [`TokenStore::create_unsaved`], with a name and scope already
    /// parsed (by a front end's decoding): nothing is checked again.
    ///
    /// # Errors
    /// [`TokenStoreError::Full`], or the random source failing.
    pub fn insert_unsaved(
        &mut self,
        name: &Name,
        role: Role,
        scope: &Pattern,
        now_us: i64,
    ) -> Result<(TokenRecord, SecretToken), TokenStoreError> {
        if self.by_id.len() >= self.max_tokens {
            return Err(TokenStoreError::Full {
                max: self.max_tokens,
            });
        }
        let NewToken { id, secret, hash } = token::generate()?;
        let record = TokenRecord {
            id: id.clone(),
            name: name.as_str().to_owned(),
            role,
            scope: scope.clone(),
            hash,
            created_at_us: now_us,
            revoked: false,
        };
        self.by_id.insert(id, record.clone());
        Ok((record, secret))
    }

    /// Checks a presented token. Takes the same steps for an unknown id, a
    /// wrong secret and a revoked token.
    ///
    /// # Errors
    /// [`AuthError`] when the token does not authenticate.
    pub fn verify(&self, presented: &str) -> Result<Principal, AuthError> {
        let Some(id) = token::parse_id(presented) else {
            return Err(AuthError);
        };
        let (record, known) = match self.by_id.get(id) {
            Some(r) => (r, Choice::from(1)),
            None => (&self.dummy, Choice::from(0)),
        };
        let live = Choice::from(u8::from(!record.revoked));
        let ok = known & live & token::hash_matches(presented, &record.hash);
        if bool::from(ok) {
            Ok(record.principal())
        } else {
            Err(AuthError)
        }
    }

    /// Marks a token revoked and saves. Returns whether it existed and was
    /// live.
    ///
    /// # Errors
    /// [`TokenStoreError`] when saving fails (the token stays live then).
    pub fn revoke(&mut self, id: &str) -> Result<bool, TokenStoreError> {
        if !self.revoke_unsaved(id) {
            return Ok(false);
        }
        if let Err(e) = self.save() {
            self.unrevoke(id);
            return Err(e);
        }
        Ok(true)
    }

    /// Marks a token revoked in memory only (see
    /// [`TokenStore::create_unsaved`]); returns whether it existed and was
    /// live.
    pub fn revoke_unsaved(&mut self, id: &str) -> bool {
        match self.by_id.get_mut(id) {
            Some(r) if !r.revoked => {
                r.revoked = true;
                true
            }
            _ => false,
        }
    }

    /// Undoes [`TokenStore::revoke_unsaved`] after its save failed.
    pub fn unrevoke(&mut self, id: &str) {
        if let Some(r) = self.by_id.get_mut(id) {
            r.revoked = false;
        }
    }

    /// Undoes [`TokenStore::create_unsaved`] after its save failed.
    pub fn forget(&mut self, id: &str) {
        self.by_id.remove(id);
    }

    /// The scope of token `id`, when it exists.
    #[must_use]
    pub fn scope_of(&self, id: &str) -> Option<Pattern> {
        self.by_id.get(id).map(|r| r.scope.clone())
    }

    /// Whether token `id` exists and is not revoked (ids are not secret).
    #[must_use]
    pub fn is_live(&self, id: &str) -> bool {
        self.by_id.get(id).is_some_and(|r| !r.revoked)
    }

    /// Every token, oldest first.
    #[must_use]
    pub fn list(&self) -> Vec<TokenRecord> {
        let mut all: Vec<_> = self.by_id.values().cloned().collect();
        all.sort_by(|a, b| (a.created_at_us, &a.id).cmp(&(b.created_at_us, &b.id)));
        all
    }

    /// Number of tokens, revoked ones included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether the store holds no token.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Writes the store to its file (if it has one).
    fn save(&self) -> Result<(), TokenStoreError> {
        self.snapshot().map_or(Ok(()), Snapshot::write)
    }

    /// The store as its file would hold it now, to write with
    /// [`Snapshot::write`] (`None` for a store in memory only).
    ///
    /// # Panics
    /// Never: the file format is plain strings and numbers.
    #[must_use]
    pub fn snapshot(&self) -> Option<Snapshot> {
        let path = self.path.clone()?;
        let file = FileFormat {
            version: 1,
            tokens: self
                .list()
                .into_iter()
                .map(|r| FileRecord {
                    id: r.id,
                    name: r.name,
                    role: r.role,
                    scope: r.scope.as_str().to_owned(),
                    sha256: token::hex(&r.hash),
                    created_at_us: r.created_at_us,
                    revoked: r.revoked,
                })
                .collect(),
        };
        let text = serde_json::to_string_pretty(&file).expect("the token file format serialises");
        Some(Snapshot { path, text })
    }
}

#[cfg(test)]
thread_local! {
    /// Run by [`Snapshot::write`] on this thread before it writes: lets a
    /// test hold a save in progress.
    pub(crate) static SAVING: std::cell::RefCell<Option<Box<dyn Fn()>>> =
        const { std::cell::RefCell::new(None) };
}

/// The token store's file contents at one moment, to be written.
#[derive(Debug)]
pub struct Snapshot {
    path: PathBuf,
    text: String,
}

impl Snapshot {
    /// Replaces the store's file with this snapshot: written beside it
    /// (mode 0600), synced, renamed over it, the directory synced
    /// ([`crate::file::write_private`]).
    ///
    /// # Errors
    /// [`TokenStoreError::Io`].
    pub fn write(self) -> Result<(), TokenStoreError> {
        #[cfg(test)]
        SAVING.with(|hook| {
            if let Some(hook) = hook.borrow().as_ref() {
                hook();
            }
        });
        crate::file::write_private(&self.path, self.text.as_bytes()).map_err(|source| {
            TokenStoreError::Io {
                path: self.path,
                source,
            }
        })
    }
}

fn check_record(r: FileRecord, limits: &MessageLimits) -> Result<TokenRecord, &'static str> {
    if r.id.len() != token::ID_HEX_LEN || !r.id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("id");
    }
    if check_name("name", &r.name, limits).is_err() {
        return Err("name");
    }
    if check_pattern("scope", &r.scope, limits).is_err() {
        return Err("scope");
    }
    let hash = hex_decode_32(&r.sha256).ok_or("sha256")?;
    if r.created_at_us < 0 {
        return Err("created_at_us");
    }
    Ok(TokenRecord {
        id: r.id,
        name: r.name,
        role: r.role,
        scope: Pattern::new(r.scope),
        hash,
        created_at_us: r.created_at_us,
        revoked: r.revoked,
    })
}

/// What kind of JSON error, without the input text `serde_json` may quote.
fn json_category(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "unknown or mistyped field or value",
        serde_json::error::Category::Eof => "unexpected end of file",
    }
}

fn dummy_record() -> TokenRecord {
    TokenRecord {
        id: "0".repeat(token::ID_HEX_LEN),
        name: "dummy".to_owned(),
        role: Role::Reader,
        scope: Pattern::new("-"),
        hash: token::hash("dummy"),
        created_at_us: 0,
        revoked: true,
    }
}

fn hex_decode_32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tmpdir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn create_verify_revoke() {
        let mut s = TokenStore::in_memory(10, MessageLimits::DEFAULT);
        let (rec, secret) = s.create("alice", Role::Reader, "room/*", 5).unwrap();
        let p = s.verify(secret.expose()).unwrap();
        assert_eq!(p.name, "alice");
        assert_eq!(p.role, Role::Reader);
        assert_eq!(p.token_id, rec.id);
        assert!(s.revoke(&rec.id).unwrap());
        assert_eq!(s.verify(secret.expose()), Err(AuthError));
        assert!(!s.revoke(&rec.id).unwrap());
        assert!(!s.revoke("nope").unwrap());
    }

    #[test]
    fn wrong_secret_unknown_id_and_garbage_fail_alike() {
        let mut s = TokenStore::in_memory(10, MessageLimits::DEFAULT);
        let (rec, secret) = s.create("a", Role::Admin, "*", 0).unwrap();
        let text = secret.expose();
        let mut wrong_secret = text.to_owned();
        let last = wrong_secret.pop().unwrap();
        wrong_secret.push(if last == '0' { '1' } else { '0' });
        let unknown_id = text.replace(&rec.id, &"f".repeat(16));
        for bad in [wrong_secret.as_str(), unknown_id.as_str(), "garbage", ""] {
            assert_eq!(s.verify(bad), Err(AuthError), "{bad}");
        }
    }

    #[test]
    fn cap_on_token_count() {
        let mut s = TokenStore::in_memory(2, MessageLimits::DEFAULT);
        s.create("a", Role::Admin, "*", 0).unwrap();
        s.create("b", Role::Admin, "*", 0).unwrap();
        assert!(matches!(
            s.create("c", Role::Admin, "*", 0),
            Err(TokenStoreError::Full { max: 2 })
        ));
    }

    #[test]
    fn bad_names_are_refused() {
        let mut s = TokenStore::in_memory(2, MessageLimits::DEFAULT);
        assert!(matches!(
            s.create("a b", Role::Admin, "*", 0),
            Err(TokenStoreError::BadField { field: "name" })
        ));
        assert!(matches!(
            s.create("a", Role::Admin, "", 0),
            Err(TokenStoreError::BadField { field: "scope" })
        ));
    }

    #[test]
    fn persists_hashes_only_with_private_mode() {
        let dir = tmpdir();
        let path = dir.path().join("tokens.json");
        let secret = {
            let mut s = TokenStore::open(&path, 10, MessageLimits::DEFAULT).unwrap();
            let (_, secret) = s.create("dev1", Role::Device, "dev1/*", 7).unwrap();
            secret
        };
        let text = fs::read_to_string(&path).unwrap();
        let secret_part = &secret.expose()[token::PREFIX.len() + token::ID_HEX_LEN + 1..];
        assert!(!text.contains(secret_part), "the secret must not be stored");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let s = TokenStore::open(&path, 10, MessageLimits::DEFAULT).unwrap();
        assert_eq!(s.verify(secret.expose()).unwrap().name, "dev1");
    }

    #[test]
    fn hostile_store_files_are_rejected() {
        let dir = tmpdir();
        let path = dir.path().join("tokens.json");
        for (text, expect) in [
            ("{", "line"),
            (r#"{"version":2,"tokens":[]}"#, "version"),
            (r#"{"version":1,"tokens":[],"extra":1}"#, "line"),
            (
                r#"{"version":1,"tokens":[{"id":"zz","name":"a","role":"admin","scope":"*","sha256":"00","created_at_us":0}]}"#,
                "bad id",
            ),
            (
                r#"{"version":1,"tokens":[{"id":"0000000000000000","name":"a","role":"root","scope":"*","sha256":"00","created_at_us":0}]}"#,
                "line",
            ),
        ] {
            fs::write(&path, text).unwrap();
            let err = TokenStore::open(&path, 10, MessageLimits::DEFAULT)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expect), "{text} -> {err}");
        }
        let many: Vec<String> = (0..3)
            .map(|i| format!(r#"{{"id":"{i:016x}","name":"a","role":"admin","scope":"*","sha256":"{}","created_at_us":0}}"#, "0".repeat(64)))
            .collect();
        fs::write(
            &path,
            format!(r#"{{"version":1,"tokens":[{}]}}"#, many.join(",")),
        )
        .unwrap();
        let err = TokenStore::open(&path, 2, MessageLimits::DEFAULT)
            .unwrap_err()
            .to_string();
        assert!(err.contains("over the cap of 2"), "{err}");
        let f = fs::File::create(&path).unwrap();
        f.set_len(MAX_FILE_BYTES + 1).unwrap();
        assert!(matches!(
            TokenStore::open(&path, 10, MessageLimits::DEFAULT),
            Err(TokenStoreError::TooLarge { .. })
        ));
    }
}

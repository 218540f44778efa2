//! Bearer tokens. Only the sha256 of a token is stored: a copy of the
//! database does not let anyone in.

use super::{Store, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including making tokens.
    Admin,
    /// Datasets and evaluations.
    Engineer,
    /// Annotation queues.
    Annotator,
    /// Graders.
    Publisher,
    /// Production traces.
    Ingest,
}

/// A token as stored: who it is for and what it may do, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// A label for people: `ci`, `rn_kelly`. Recorded as the author of what the token writes.
    pub name: String,
    pub role: Role,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub created_by: String,
}

/// A newly made token: the secret is shown once and never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewToken {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Admin, Role::Engineer, Role::Annotator, Role::Publisher, Role::Ingest];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Engineer => "engineer",
            Role::Annotator => "annotator",
            Role::Publisher => "publisher",
            Role::Ingest => "ingest",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        Role::ALL.into_iter().find(|role| role.as_str() == text).ok_or_else(|| {
            let names: Vec<&str> = Role::ALL.iter().map(|role| role.as_str()).collect();
            format!("unknown role {text:?}; expected one of {}", names.join(", "))
        })
    }
}

impl Store {
    /// Makes a token with a fresh random secret and stores its hash.
    pub fn create_token(&self, name: &str, role: Role, created_by: &str) -> Result<NewToken, StoreError> {
        if name.trim().is_empty() || name.len() > 128 {
            return Err(StoreError::Invalid(vec![crate::model::FieldError {
                field: "name".into(),
                reason: "must be 1 to 128 characters".into(),
            }]));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|error| StoreError::Storage(format!("no randomness for a token: {error}")))?;
        let token = format!("assay_{}", hex::encode(secret));
        let info = TokenInfo {
            name: name.to_owned(),
            role,
            created_at: super::clock::now_rfc3339(),
            created_by: created_by.to_owned(),
        };
        let record = serde_json::to_vec(&info).map_err(|error| StoreError::Storage(error.to_string()))?;
        self.trees.tokens.insert(token_key(&token), record)?;
        self.db.flush()?;
        Ok(NewToken { token, info })
    }

    /// The token's holder, or `None` for an unknown token.
    pub fn authenticate(&self, token: &str) -> Result<Option<TokenInfo>, StoreError> {
        match self.trees.tokens.get(token_key(token))? {
            None => Ok(None),
            Some(record) => serde_json::from_slice(&record)
                .map(Some)
                .map_err(|error| StoreError::Storage(format!("unreadable token record: {error}"))),
        }
    }

    /// How many tokens exist (the server makes a first admin token when there are none).
    pub fn token_count(&self) -> Result<usize, StoreError> {
        Ok(self.trees.tokens.len())
    }
}

fn token_key(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_and_authenticate() {
        let directory = tempfile::tempdir().unwrap();
        let store = Store::open(directory.path()).unwrap();
        assert_eq!(store.token_count().unwrap(), 0);
        let made = store.create_token("ci", Role::Engineer, "bootstrap").unwrap();
        assert!(made.token.starts_with("assay_") && made.token.len() == 70);
        assert_eq!(store.authenticate(&made.token).unwrap().unwrap().role, Role::Engineer);
        assert_eq!(store.authenticate("assay_wrong").unwrap(), None);
        drop(store);
        let raw = std::fs::read_dir(directory.path()).unwrap().count();
        assert!(raw > 0);
        let store = Store::open(directory.path()).unwrap();
        assert_eq!(store.authenticate(&made.token).unwrap().unwrap().name, "ci");
        // The secret itself is nowhere in the tree.
        for entry in store.trees.tokens.iter() {
            let (key, value) = entry.unwrap();
            assert!(!String::from_utf8_lossy(&key).contains(&made.token[6..]));
            assert!(!String::from_utf8_lossy(&value).contains(&made.token[6..]));
        }
    }
}

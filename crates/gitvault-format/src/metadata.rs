//! Conventions of forge metadata repositories (FORMAT.md §7.7), shared by whoever writes and
//! reads them.

/// The suffix of a metadata repository's name: `github:acme/api#metadata`. `#` is in no
/// forge's repository names, so it cannot collide with a real repository.
pub const SUFFIX: &str = "#metadata";

/// The field added to an item the forge no longer returns, with the time it was first found
/// missing.
pub const DELETED_FIELD: &str = "gitvault_deleted_at";

/// The branch that holds the metadata.
pub const BRANCH: &str = "refs/heads/main";

//! Gitea and Forgejo (`/api/v1`): organisations, users and single repositories, listed as on
//! GitHub (see `github.rs`), in pages of 50 — the servers' default `MAX_RESPONSE_ITEMS`: asking
//! for more returns that many anyway.

use crate::github::Listings;

pub(crate) const GITEA: Listings = Listings { org_query: "limit=50", own_query: "limit=50", user_query: "limit=50" };

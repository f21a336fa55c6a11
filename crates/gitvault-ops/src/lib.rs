//! Operating gitvault unattended: the catalog of runs, repositories, logs, audit entries and API
//! tokens (an embedded SQLite database); each repository's health against its RPO; API tokens;
//! alerts (webhook, Slack, Teams, e-mail).

pub mod catalog;
pub mod health;
pub mod notify;
pub mod schedule;
pub mod token;

//! Operating gitvault unattended: the catalog of runs, repositories, logs, audit entries and API
//! tokens (an embedded SQLite database); cron schedules; alerts.

pub mod catalog;

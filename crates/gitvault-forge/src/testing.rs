//! The fake forge launcher (see `fakeforge/`).

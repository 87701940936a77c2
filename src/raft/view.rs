//! What a read of the state machine may assume, as a type.
//!
//! The state machine on a follower lags the leader, and even a leader may have been deposed
//! without knowing it; a read from local state is therefore only as current as the node it
//! runs on. A caller gets at the state through one of two views, and the view it holds says
//! which kind of read it is:
//! - [`Linearized`]: returned only by [`super::node::Node::linearize`], after the
//!   read-index round finished. Everything acknowledged before the round began is
//!   visible through it. Every read a client is answered from takes one: reading a secret,
//!   its versions, a listing, the mounts, a backup.
//! - [`Local`]: this node's state as it is, from [`super::node::Node::local`]. For checks
//!   the state machine repeats where the write applies (a mount covering a path about to be
//!   written, a token's policy), for the local routes (`GET /cluster`), and for first
//!   guesses that a barrier then confirms.
//!
//! Invariant: neither view can be built outside this module's parent; a function that must
//! read current state takes `&Linearized`, so forgetting the barrier does not compile.

use crate::store::state_machine::Reader;

/// Proof that the read-index round ran: see the module doc.
#[derive(Clone)]
pub struct Linearized {
    reader: Reader,
}

/// This node's own state, which may lag the leader: see the module doc.
#[derive(Clone)]
pub struct Local {
    reader: Reader,
}

impl Linearized {
    pub(super) fn new(reader: Reader) -> Self {
        Linearized { reader }
    }
}

impl Local {
    pub(super) fn new(reader: Reader) -> Self {
        Local { reader }
    }
}

/// A view of the state machine: either kind, for a read that is correct on either.
pub trait View {
    fn state(&self) -> &Reader;
}

impl View for Linearized {
    fn state(&self) -> &Reader {
        &self.reader
    }
}

impl View for Local {
    fn state(&self) -> &Reader {
        &self.reader
    }
}

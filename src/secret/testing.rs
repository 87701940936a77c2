//! Test support for the apply logic: an in-memory state that folds in each batch's changes
//! exactly as the store does, and one-op entries.

use std::collections::BTreeMap;

use super::auth::{AppRoleBinding, Binding, Role};
use super::command::{Caller, Command, CommandResult, Op, Request, RequestId};
use super::machine::apply;
use super::state::{data_ranges, keys, Changes, StateRead};
use super::token::{PathPattern, Policy, Scope};

/// An in-memory state: apply a batch, then fold its changes in, as the store does.
#[derive(Default)]
pub struct Mem(pub BTreeMap<Vec<u8>, Vec<u8>>);

impl StateRead for Mem {
    type Error = std::convert::Infallible;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self.0.get(key).cloned())
    }
    fn next_key(&self, from: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self.0.range(from.to_vec()..).next().map(|(k, _)| k.clone()))
    }
}

impl Mem {
    pub fn run(&mut self, reqs: &[Request]) -> Vec<CommandResult> {
        let mut changes = Changes::default();
        let out = reqs
            .iter()
            .flat_map(|r| apply(self, &mut changes, r).unwrap())
            .collect();
        // As the store does: ranges first, then writes, then a restore's swap.
        let plan = changes.into_plan();
        for (start, end) in plan.delete_ranges {
            self.0.retain(|k, _| *k < start || *k >= end);
        }
        for (k, v) in plan.writes {
            match v {
                Some(v) => self.0.insert(k, v),
                None => self.0.remove(&k),
            };
        }
        if plan.replace_data_with_staging {
            for (start, end) in data_ranges() {
                self.0.retain(|k, _| *k < start || *k >= end);
            }
            let staged: Vec<_> = self
                .0
                .iter()
                .filter(|(k, _)| k[0] == keys::STAGING)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, v) in staged {
                self.0.remove(&k);
                self.0.insert(k[1..].to_vec(), v);
            }
        }
        out
    }
}

/// A one-op entry.
pub fn single(id: &str, at_ms: u64, caller: Option<Caller>, command: Command) -> Request {
    Request {
        at_ms,
        ops: vec![Op {
            id: RequestId::named(id),
            caller,
            command,
        }],
    }
}

/// An AppRole role with id `role_id` granting `read:secret` on `app/*` for 60 s (300 s max).
pub fn approle(role_id: &str) -> Role {
    Role {
        policy: Policy {
            scopes: vec![Scope::ReadSecret],
            paths: vec![PathPattern::parse("app/*").unwrap()],
        },
        token_ttl_s: 60,
        token_max_ttl_s: 300,
        binding: Binding::AppRole(AppRoleBinding {
            role_id: role_id.into(),
            secret_id_ttl_s: 0,
            secret_id_num_uses: 0,
        }),
    }
}

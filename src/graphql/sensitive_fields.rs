//! Every mutation field at most once per operation, aliases and fragments included. Each
//! mutation is a write or a guess (`requestCode` sends an SMS, `verifyCode` spends an attempt,
//! `activateInvite` probes whether a code exists, `logout` writes), so a document asking for
//! one twice — `a: logout(…) b: logout(…)`, or the same field through two fragments — is
//! refused whole, before anything executes, rather than run partly.

use std::collections::HashMap;

use async_graphql::{
    ServerError,
    parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet},
};

use crate::error::document_refused;

/// How deep fragments are followed. The schema's recursive-depth limit (32) refuses deeper
/// documents anyway; this check runs before it, so it must not recurse without bound itself.
const MAX_NESTING: usize = 32;

/// Root field name → how often it is selected.
type Counts = HashMap<String, usize>;

/// Refuses a document one of whose mutations selects a root field more than once, or nests
/// fragments too deeply to count them.
pub fn check(document: &ExecutableDocument) -> Result<(), ServerError> {
    for (_, operation) in document.operations.iter() {
        if operation.node.ty != OperationType::Mutation {
            continue;
        }
        let mut memo = HashMap::new();
        let message =
            match root_field_counts(document, &operation.node.selection_set.node, &mut memo, 0) {
                Ok(counts) => match first_repeated(&counts) {
                    Some(field) => format!("An operation may contain {field} only once."),
                    None => continue,
                },
                // Refused, not passed: an uncounted fragment could hide a second one.
                Err(TooDeep) => "Fragments are nested too deeply.".to_owned(),
            };
        return Err(document_refused(message, operation.pos));
    }
    Ok(())
}

/// The alphabetically first mutation field selected more than once (`__typename` is not a
/// mutation and may repeat).
fn first_repeated(counts: &Counts) -> Option<&str> {
    let mut repeated: Vec<&str> = counts
        .iter()
        .filter(|(name, count)| **count > 1 && !name.starts_with("__"))
        .map(|(name, _)| name.as_str())
        .collect();
    repeated.sort_unstable();
    repeated.first().copied()
}

/// Fragments nested past [`MAX_NESTING`].
#[derive(Debug)]
struct TooDeep;

/// How often each field is selected at the root of a selection set, following fragments. Each
/// fragment's counts are worked out once (`memo`), so repeated spreads are cheap; a fragment
/// that spreads itself counts as empty inside itself (such a document fails validation anyway).
fn root_field_counts(
    document: &ExecutableDocument,
    selection_set: &SelectionSet,
    memo: &mut HashMap<String, Option<Counts>>,
    nesting: usize,
) -> Result<Counts, TooDeep> {
    if nesting > MAX_NESTING {
        return Err(TooDeep);
    }
    let mut total = Counts::new();
    let add = |total: &mut Counts, counts: &Counts| {
        for (name, count) in counts {
            *total.entry(name.clone()).or_default() += count;
        }
    };
    for selection in &selection_set.items {
        match &selection.node {
            Selection::Field(field) => {
                *total.entry(field.node.name.node.to_string()).or_default() += 1;
            }
            Selection::InlineFragment(fragment) => {
                let inner = root_field_counts(
                    document,
                    &fragment.node.selection_set.node,
                    memo,
                    nesting + 1,
                )?;
                add(&mut total, &inner);
            }
            Selection::FragmentSpread(spread) => {
                let fragment_name = spread.node.fragment_name.node.as_str();
                match memo.get(fragment_name) {
                    Some(Some(counts)) => {
                        let counts = counts.clone();
                        add(&mut total, &counts);
                    }
                    Some(None) => {} // in progress: a cycle
                    None => {
                        memo.insert(fragment_name.to_owned(), None);
                        let counts = match document.fragments.get(fragment_name) {
                            Some(f) => root_field_counts(
                                document,
                                &f.node.selection_set.node,
                                memo,
                                nesting + 1,
                            )?,
                            None => Counts::new(),
                        };
                        add(&mut total, &counts);
                        memo.insert(fragment_name.to_owned(), Some(counts));
                    }
                }
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn refused(query: &str) -> Option<String> {
        let document = parse_query(query).expect("the test document parses");
        check(&document).err().map(|error| error.message)
    }

    #[test]
    fn each_mutation_field_once() {
        assert_eq!(
            refused("mutation { logout(refreshToken: \"a\") logoutAll }"),
            None
        );
        assert_eq!(refused("query { a: me { id } b: me { id } }"), None);
        assert_eq!(
            refused("mutation { __typename a: __typename logoutAll }"),
            None
        );
        let aliases: String = (0..100)
            .map(|i| format!("l{i}: logout(refreshToken: \"x\") "))
            .collect();
        assert_eq!(
            refused(&format!("mutation {{ {aliases} }}")).as_deref(),
            Some("An operation may contain logout only once.")
        );
        assert_eq!(
            refused(
                "mutation { ... on Mutation { a: activateInvite(inviteCode: \"A\") { id } } \
                 ... F } fragment F on Mutation { activateInvite(inviteCode: \"B\") { id } }"
            )
            .as_deref(),
            Some("An operation may contain activateInvite only once.")
        );
    }

    /// Two `requestCode` at the bottom of a 20-deep fragment chain: counted (and refused) by
    /// this check, not by a depth limit — the chain is well under [`MAX_NESTING`].
    #[test]
    fn a_deep_fragment_chain_is_counted_to_the_bottom() {
        let chain = |bottom: &str| {
            let mut query = String::from("mutation { ...F0 }\n");
            for i in 0..20 {
                query.push_str(&format!("fragment F{i} on Mutation {{ ...F{} }}\n", i + 1));
            }
            query.push_str(&format!("fragment F20 on Mutation {{ {bottom} }}"));
            query
        };
        let twice = chain(
            "... on Mutation { a: requestCode(phone: \"1\") { phone } } \
             ... on Mutation { b: requestCode(phone: \"2\") { phone } }",
        );
        assert_eq!(
            refused(&twice).as_deref(),
            Some("An operation may contain requestCode only once.")
        );
        let once = chain(
            "... on Mutation { a: requestCode(phone: \"1\") { phone } } \
             ... on Mutation { b: logoutAll }",
        );
        assert_eq!(refused(&once), None);
    }
}

//! Every field a document selects, with each fragment spread expanded, counts at least once
//! against the complexity budget (`GRAPHQL_MAX_COMPLEXITY`).
//!
//! async-graphql's cost count leaves out fields that cost 0 (`__typename`, `totalCount`) and
//! async-graphql resolves every alias and every spread of a field again. So fragments that
//! spread each other ten times over, four levels down, make 10,000 fields at a cost near 0:
//! `{ users(first: 1) { ...F4 } }` with `F1` selecting `totalCount` ten times and `F2`–`F4`
//! each spreading the one below ten times. Counting the expanded document refuses that, with
//! the complexity limit's own message, before anything runs. Each fragment is counted once
//! (`memo`), so the count costs the document's length, not its expansion.

use std::collections::HashMap;

use async_graphql::{
    ServerError,
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};

use crate::error::code;

/// How deep fields and fragments are followed. The schema's recursive-depth limit (32) refuses
/// deeper documents anyway; this check runs before it, so it must not recurse without bound.
const MAX_NESTING: usize = 64;

/// The message of async-graphql's complexity limit: this is the same budget.
const TOO_COMPLEX: &str = "Query is too complex.";

/// Refuses a document whose operations select more than `budget` fields in all, once their
/// fragments are expanded. All of them, not only the one that runs: async-graphql validates
/// every operation of a document, so 3,000 operations of 1,900 fields each would be as much
/// work as one of 5.7 million. `budget` 0 (the complexity limit off) checks nothing.
pub fn check(document: &ExecutableDocument, budget: usize) -> Result<(), ServerError> {
    if budget == 0 {
        return Ok(());
    }
    // A fragment's count is the same in every operation that spreads it.
    let mut memo = HashMap::new();
    let mut total: usize = 0;
    for (_, operation) in document.operations.iter() {
        // Refused, not passed, when too deep: what was not counted could be anything.
        let fields =
            count(document, &operation.node.selection_set.node, &mut memo, 0).unwrap_or(usize::MAX);
        total = total.saturating_add(fields);
        if total > budget {
            let mut error = ServerError::new(TOO_COMPLEX, Some(operation.pos));
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("code", code::BAD_USER_INPUT);
            return Err(error);
        }
    }
    Ok(())
}

/// Nested past [`MAX_NESTING`].
struct TooDeep;

/// The fields of `selection_set` and everything under it, fragments expanded. A fragment in
/// progress (one that spreads itself, which validation refuses anyway) counts as empty inside
/// itself.
fn count<'a>(
    document: &'a ExecutableDocument,
    selection_set: &'a SelectionSet,
    memo: &mut HashMap<&'a str, Option<usize>>,
    nesting: usize,
) -> Result<usize, TooDeep> {
    if nesting > MAX_NESTING {
        return Err(TooDeep);
    }
    let mut total: usize = 0;
    for selection in &selection_set.items {
        let fields = match &selection.node {
            Selection::Field(field) => {
                1 + count(document, &field.node.selection_set.node, memo, nesting + 1)?
            }
            Selection::InlineFragment(fragment) => count(
                document,
                &fragment.node.selection_set.node,
                memo,
                nesting + 1,
            )?,
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                match memo.get(name) {
                    Some(known) => known.unwrap_or(0),
                    None => {
                        memo.insert(name, None);
                        let fields = match document.fragments.get(name) {
                            Some(fragment) => count(
                                document,
                                &fragment.node.selection_set.node,
                                memo,
                                nesting + 1,
                            )?,
                            None => 0,
                        };
                        memo.insert(name, Some(fields));
                        fields
                    }
                }
            }
        };
        total = total.saturating_add(fields);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn fields(query: &str) -> Option<usize> {
        let document = parse_query(query).expect("the test document parses");
        let (_, operation) = document.operations.iter().next().expect("an operation");
        count(
            &document,
            &operation.node.selection_set.node,
            &mut HashMap::new(),
            0,
        )
        .ok()
    }

    /// `levels` fragments, each spreading the one below `fan` times; the last selects
    /// `__typename` `fan` times.
    fn fan_out(levels: usize, fan: usize) -> String {
        let mut query = format!("{{ ...F{levels} }}\n");
        for level in (1..=levels).rev() {
            let inner = if level == 1 {
                "__typename ".repeat(fan)
            } else {
                format!("...F{} ", level - 1).repeat(fan)
            };
            query.push_str(&format!("fragment F{level} on Query {{ {inner} }}\n"));
        }
        query
    }

    #[test]
    fn fields_are_counted_with_every_spread_expanded() {
        assert_eq!(fields("{ me { id phone } }"), Some(3));
        assert_eq!(fields("{ a: me { id } b: me { id } }"), Some(4));
        assert_eq!(
            fields("{ me { ...U ... on User { id } } } fragment U on User { id phone }"),
            Some(4)
        );
        assert_eq!(fields(&fan_out(2, 3)), Some(9));
        assert_eq!(fields(&fan_out(4, 10)), Some(10_000));
        // A fragment spread twice is counted once per spread, however it is reached.
        assert_eq!(
            fields("{ ...A ...B } fragment A on Query { ...B } fragment B on Query { me { id } }"),
            Some(4)
        );
        // A cycle (refused by validation later) ends the count instead of looping.
        assert_eq!(
            fields("{ ...A } fragment A on Query { __typename ...A }"),
            Some(1)
        );
        // An unknown fragment counts nothing here; validation names it.
        assert_eq!(fields("{ ...Missing }"), Some(0));
    }

    #[test]
    fn the_budget_refuses_past_it_and_zero_turns_it_off() {
        let document = parse_query(fan_out(4, 10)).expect("parses");
        let error = check(&document, 2000).expect_err("10,000 fields");
        assert_eq!(error.message, TOO_COMPLEX);
        assert!(check(&document, 10_000).is_ok());
        assert!(check(&document, 9_999).is_err());
        assert!(check(&document, 0).is_ok());
        // Every operation of the document is counted, together: 2 + 4 fields.
        let two = parse_query("query A { me { id } } query B { a: me { id } b: me { id } }")
            .expect("parses");
        assert!(check(&two, 5).is_err());
        assert!(check(&two, 6).is_ok());
    }

    #[test]
    fn nesting_past_the_bound_is_refused_not_followed() {
        let deep = |levels: usize| {
            let mut query = "{ ...F0 }\n".to_owned();
            for i in 0..levels {
                query.push_str(&format!("fragment F{i} on Query {{ ...F{} }}\n", i + 1));
            }
            query.push_str(&format!("fragment F{levels} on Query {{ __typename }}"));
            query
        };
        // The chain's last fragment is `levels + 1` deep, and its field's (empty) selection
        // one more.
        assert_eq!(fields(&deep(MAX_NESTING - 2)), Some(1));
        assert_eq!(fields(&deep(MAX_NESTING - 1)), None);
        let document = parse_query(deep(MAX_NESTING - 1)).expect("parses");
        assert!(check(&document, 2000).is_err());
    }
}

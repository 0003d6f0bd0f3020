//! Every field a document selects, with each fragment spread expanded and each row's fields
//! counted once per row the list may hold, counts at least once against the complexity budget
//! (`GRAPHQL_MAX_COMPLEXITY`); so does each fragment. One unaliased `__typename` per selection
//! set is free, as clients add it everywhere.
//!
//! async-graphql's cost count leaves out fields that cost 0 (`__typename`, `totalCount`), and
//! async-graphql resolves every alias and every spread of a field again, for every row. So:
//! - fragments that spread each other ten times over, four levels down, make 10,000 fields at
//!   a cost near 0: `{ users(first: 1) { ...F4 } }` with `F1` selecting `totalCount` ten times
//!   and `F2`–`F4` each spreading the one below ten times;
//! - `invitedUsers(first: 100) { nodes { …1,997 × __typename } }` costs 101 and resolves
//!   about 200,000 fields under 100 rows; `sessions { …1,997 × __typename }` resolves 1,998
//!   per sign-in listed, for what async-graphql counts as one field per row.
//!
//! Counting the expanded document, rows multiplied as the cost count multiplies them
//! ([`page_rows`]: `edges` and `nodes` of a page, the rows of `sessions`), refuses those with
//! the complexity limit's own message, before anything runs. Each fragment is counted once per
//! place it can sit (`memo`), so the count costs about the document's length, not its expansion.

use std::collections::HashMap;

use async_graphql::{
    ServerError, Variables,
    parser::types::{ExecutableDocument, Field, OperationDefinition, Selection, SelectionSet},
};
use async_graphql_value::{ConstValue, Value};

use super::types::{PAGINATED_FIELDS, page_rows};
use crate::{error::document_refused, services::sessions};

/// How deep fields and fragments are followed. The schema's recursive-depth limit (32) refuses
/// deeper documents anyway; this check runs before it, so it must not recurse without bound.
const MAX_NESTING: usize = 64;

/// How many pages (`users`, `invitedUsers`, fragments expanded, not multiplied by rows) the
/// operations of one document may ask for. The contract's largest operation asks for 2; an
/// app showing a few lists at once, a handful.
pub const MAX_PAGES: usize = 20;

/// The message of async-graphql's complexity limit: this is the same budget.
const TOO_COMPLEX: &str = "Query is too complex.";

/// Refuses a document whose operations select more than `budget` fields in all, once their
/// fragments are expanded. All of them, not only the one that runs: async-graphql validates
/// every operation of a document, so 3,000 operations of 1,900 fields each would be as much
/// work as one of 5.7 million. `variables` give `first: $n` its value. `budget` 0 (the
/// complexity limit off) checks nothing.
pub fn check(
    document: &ExecutableDocument,
    variables: &Variables,
    budget: usize,
) -> Result<(), ServerError> {
    if budget == 0 {
        return Ok(());
    }
    let mut total = Tally::default();
    for (_, operation) in document.operations.iter() {
        let mut counter = Counter {
            document,
            operation: &operation.node,
            variables,
            memo: HashMap::new(),
        };
        // Refused, not passed, when too deep: what was not counted could be anything.
        let tally = counter
            .count(&operation.node.selection_set.node, None, 0)
            .unwrap_or(Tally {
                fields: usize::MAX,
                pages: usize::MAX,
            });
        total = total.add(tally);
        if total.fields > budget || total.pages > MAX_PAGES {
            return Err(document_refused(TOO_COMPLEX, operation.pos));
        }
    }
    Ok(())
}

/// What a selection costs: its fields (rows multiplied), and the pages it loads. Each page
/// asked for is a statement of its own (or, under rows, one for the whole page of parents),
/// however few rows it holds: `invitedUsers(first: 1, after: …)` under 999 aliases with
/// forged cursors would be 999 statements for 1,998 fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    fields: usize,
    pages: usize,
}

impl Tally {
    fn add(self, other: Self) -> Self {
        Self {
            fields: self.fields.saturating_add(other.fields),
            pages: self.pages.saturating_add(other.pages),
        }
    }
}

/// Nested past [`MAX_NESTING`].
struct TooDeep;

struct Counter<'a> {
    document: &'a ExecutableDocument,
    operation: &'a OperationDefinition,
    variables: &'a Variables,
    /// (fragment, the rows of the page it sits in) → its tally; None while being counted.
    memo: HashMap<(&'a str, Option<usize>), Option<Tally>>,
}

impl<'a> Counter<'a> {
    /// The fields of `selection_set` and everything under it. `page_rows` is Some when the
    /// selection set is a page's (`UserConnection`): its `edges` and `nodes` hold that many
    /// rows. A fragment in progress (one that spreads itself, which validation refuses anyway)
    /// counts as empty inside itself.
    fn count(
        &mut self,
        selection_set: &'a SelectionSet,
        page_rows: Option<usize>,
        nesting: usize,
    ) -> Result<Tally, TooDeep> {
        if nesting > MAX_NESTING {
            return Err(TooDeep);
        }
        let mut total = Tally::default();
        let mut typename_seen = false;
        for selection in &selection_set.items {
            let fields = match &selection.node {
                // Apollo Client and urql add one `__typename` to every selection set: that one
                // is free, as async-graphql has it, so that what they send passes as it is.
                // More of them (aliases, repeats) count.
                Selection::Field(field)
                    if field.node.name.node == "__typename"
                        && field.node.alias.is_none()
                        && !typename_seen =>
                {
                    typename_seen = true;
                    Tally::default()
                }
                Selection::Field(field) => self.field(&field.node, page_rows, nesting)?,
                // A fragment counts 1 itself: each has a free `__typename` of its own.
                Selection::InlineFragment(fragment) => self
                    .count(&fragment.node.selection_set.node, page_rows, nesting + 1)?
                    .add(ONE_FIELD),
                Selection::FragmentSpread(spread) => {
                    let key = (spread.node.fragment_name.node.as_str(), page_rows);
                    let inner = match self.memo.get(&key) {
                        Some(known) => known.unwrap_or_default(),
                        None => {
                            self.memo.insert(key, None);
                            let fields = match self.document.fragments.get(key.0) {
                                Some(fragment) => self.count(
                                    &fragment.node.selection_set.node,
                                    page_rows,
                                    nesting + 1,
                                )?,
                                None => Tally::default(),
                            };
                            self.memo.insert(key, Some(fields));
                            fields
                        }
                    };
                    inner.add(ONE_FIELD)
                }
            };
            total = total.add(fields);
        }
        Ok(total)
    }

    /// One field and what it selects, times the rows it holds. A field holding rows counts
    /// each row at least once, even when all it selects there is free: the rows resolve anyway
    /// (`sessions { __typename }` is 100 rows).
    fn field(
        &mut self,
        field: &'a Field,
        page_rows: Option<usize>,
        nesting: usize,
    ) -> Result<Tally, TooDeep> {
        let name = field.name.node.as_str();
        let children = &field.selection_set.node;
        let paginated = PAGINATED_FIELDS.contains(&name);
        let (rows, inner_page) = if paginated {
            (None, Some(self.first(field)))
        } else if name == "sessions" {
            (Some(sessions::MAX_LISTED as usize), None)
        } else if name == "edges" || name == "nodes" {
            (Some(page_rows.unwrap_or(1)), None)
        } else {
            (None, None)
        };
        let below = self.count(children, inner_page, nesting + 1)?;
        let fields = match rows {
            Some(rows) => rows.saturating_mul(below.fields.max(1)),
            None => below.fields,
        };
        Ok(Tally {
            fields: fields.saturating_add(1),
            pages: below.pages.saturating_add(usize::from(paginated)),
        })
    }

    /// The rows a paginated field's `first` asks for, from a literal, a variable or its
    /// default, as [`page_rows`] counts them.
    fn first(&self, field: &'a Field) -> usize {
        let argument = field
            .arguments
            .iter()
            .find(|(name, _)| name.node == "first")
            .map(|(_, value)| &value.node);
        // Read where it is, never copied: a hostile variable can be a 60 KiB list, read once
        // per field that uses it.
        let number = match argument {
            Some(Value::Variable(variable)) => {
                let value = self.variables.get(variable).or_else(|| {
                    self.operation
                        .variable_definitions
                        .iter()
                        .find(|definition| definition.node.name.node == *variable)
                        .and_then(|definition| definition.node.default_value.as_ref())
                        .map(|value| &value.node)
                });
                match value {
                    Some(ConstValue::Number(n)) => Some(n),
                    _ => None,
                }
            }
            Some(Value::Number(n)) => Some(n),
            _ => None,
        };
        let first = number.map(|n| n.as_i64().and_then(|n| i32::try_from(n).ok()).unwrap_or(0));
        page_rows(first)
    }
}

/// What a fragment adds by being there, besides what it selects.
const ONE_FIELD: Tally = Tally {
    fields: 1,
    pages: 0,
};

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    /// The tally of the document's first operation, with `variables` (None: too deep).
    fn tally(query: &str, variables: serde_json::Value) -> Option<Tally> {
        let document = parse_query(query).expect("the test document parses");
        let (_, operation) = document.operations.iter().next().expect("an operation");
        let variables = Variables::from_json(variables);
        let mut counter = Counter {
            document: &document,
            operation: &operation.node,
            variables: &variables,
            memo: HashMap::new(),
        };
        counter
            .count(&operation.node.selection_set.node, None, 0)
            .ok()
    }

    fn fields_with(query: &str, variables: serde_json::Value) -> Option<usize> {
        tally(query, variables).map(|tally| tally.fields)
    }

    fn fields(query: &str) -> Option<usize> {
        fields_with(query, serde_json::json!({}))
    }

    fn pages(query: &str) -> usize {
        tally(query, serde_json::json!({})).map_or(usize::MAX, |tally| tally.pages)
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
        // Each fragment, spread or inline, counts 1 besides its fields.
        assert_eq!(
            fields("{ me { ...U ... on User { id } } } fragment U on User { id phone }"),
            Some(1 + (1 + 2) + (1 + 1))
        );
        // The last level: one free `__typename` and 2 more; then 3 × (spread + what it holds).
        assert_eq!(fields(&fan_out(2, 3)), Some(1 + 3 * (1 + 2)));
        assert_eq!(fields(&fan_out(4, 10)), Some(10_111));
        // A fragment spread twice is counted once per spread, however it is reached.
        assert_eq!(
            fields("{ ...A ...B } fragment A on Query { ...B } fragment B on Query { me { id } }"),
            Some((1 + 1 + 2) + (1 + 2))
        );
        // A cycle (refused by validation later) ends the count instead of looping.
        assert_eq!(
            fields("{ ...A } fragment A on Query { a: __typename ...A }"),
            Some(1 + 1 + 1)
        );
        // An unknown fragment counts only its spread here; validation names it.
        assert_eq!(fields("{ ...Missing }"), Some(1));
    }

    #[test]
    fn one_plain_typename_per_selection_set_is_free() {
        // What Apollo Client sends: `__typename` in every selection set.
        assert_eq!(fields("{ __typename me { __typename id } }"), Some(2));
        // Aliased, or a second one, it counts.
        assert_eq!(fields("{ me { __typename __typename id } }"), Some(3));
        assert_eq!(fields("{ me { t: __typename id } }"), Some(3));
        assert_eq!(fields("{ me { id __typename a: __typename } }"), Some(3));
        // Under rows, the free one stays free and the others count per row.
        assert_eq!(
            fields("{ users(first: 100) { __typename nodes { __typename t: __typename } } }"),
            Some(1 + 1 + 100)
        );
    }

    #[test]
    fn the_rows_of_a_page_multiply_what_they_hold() {
        // me 1 + invitedUsers 1 + nodes (1 + 100 × 1: `__typename` is free) + edges (1 + 100 ×
        // (cursor 1 + node 2)) + totalCount 1 + pageInfo 2: the page's own fields once, its
        // rows' once per row.
        assert_eq!(
            fields(
                "{ me { invitedUsers(first: 100) { nodes { __typename id } \
                 edges { cursor node { id } } totalCount pageInfo { hasNextPage } } } }"
            ),
            Some(1 + 1 + 101 + 301 + 1 + 2)
        );
        // The default page is 20 rows; an out-of-range `first` counts one, as in the cost.
        assert_eq!(fields("{ users { nodes { id } } }"), Some(1 + 1 + 20));
        assert_eq!(
            fields("{ users(first: 0) { nodes { id } } }"),
            Some(1 + 1 + 1)
        );
        assert_eq!(fields("{ users(first: 101) { nodes { id } } }"), Some(3));
        // Through fragments and inline fragments, and pages inside rows.
        assert_eq!(
            fields(
                "{ users(first: 10) { ...Rows } } fragment Rows on UserConnection { \
                 ... on UserConnection { nodes { invitedUsers(first: 5) { nodes { id } } } } }"
            ),
            Some(1 + 1 + 1 + 1 + 10 * (1 + 1 + 5))
        );
        // The same fragment inside and outside a page counts its rows only inside.
        assert_eq!(
            fields(
                "{ users(first: 10) { ...N } me { invitedUsers(first: 3) { ...N } } } \
                 fragment N on UserConnection { nodes { id } }"
            ),
            Some((1 + 1 + 1 + 10) + (1 + 1 + 1 + 1 + 3))
        );
        // `edges` and `nodes` outside a page are one each.
        assert_eq!(fields("{ nodes { id } }"), Some(2));
        // sessions holds at most MAX_LISTED rows.
        assert_eq!(
            fields("{ sessions { id current } }"),
            Some(1 + sessions::MAX_LISTED as usize * 2)
        );
        // Rows count once each even when what they select is free.
        assert_eq!(
            fields("{ sessions { __typename } }"),
            Some(1 + sessions::MAX_LISTED as usize)
        );
        assert_eq!(
            fields("{ users(first: 50) { nodes { __typename } edges { __typename } } }"),
            Some(1 + 51 + 51)
        );
        // A field that holds no rows and selects nothing counted is itself only.
        assert_eq!(fields("{ me { __typename } }"), Some(1));
    }

    #[test]
    fn first_comes_from_a_variable_or_its_default() {
        let query = "query($n: Int = 7) { users(first: $n) { nodes { id } } }";
        assert_eq!(fields_with(query, serde_json::json!({ "n": 50 })), Some(52));
        assert_eq!(fields_with(query, serde_json::json!({})), Some(9));
        // null, or no value and no default: the field's own default (20).
        assert_eq!(
            fields_with(query, serde_json::json!({ "n": null })),
            Some(22)
        );
        assert_eq!(
            fields("query($m: Int) { users(first: $m) { nodes { id } } }"),
            Some(22)
        );
        // Out of range, or not a number at all: one row.
        assert_eq!(
            fields_with(query, serde_json::json!({ "n": 5_000_000_000i64 })),
            Some(3)
        );
        assert_eq!(
            fields_with(query, serde_json::json!({ "n": "x" })),
            Some(22)
        );
    }

    #[test]
    fn pages_are_counted_once_each_not_per_row() {
        assert_eq!(pages("{ me { id } }"), 0);
        assert_eq!(
            pages("{ users(first: 100) { nodes { invitedUsers(first: 100) { totalCount } } } }"),
            2
        );
        assert_eq!(
            pages(
                "{ a: users { ...P } b: users { ...P } } \
                 fragment P on UserConnection { nodes { invitedUsers { totalCount } } }"
            ),
            4
        );
        let aliases = |n: usize| {
            let pages: String = (0..n)
                .map(|i| format!("a{i}: invitedUsers(first: 1) {{ totalCount }} "))
                .collect();
            parse_query(format!("{{ me {{ {pages} }} }}")).expect("parses")
        };
        let none = Variables::default();
        assert!(check(&aliases(MAX_PAGES), &none, 2000).is_ok());
        let error = check(&aliases(MAX_PAGES + 1), &none, 2000).expect_err("one page too many");
        assert_eq!(error.message, TOO_COMPLEX);
        // Off with the complexity limit.
        assert!(check(&aliases(MAX_PAGES + 1), &none, 0).is_ok());
    }

    #[test]
    fn the_budget_refuses_past_it_and_zero_turns_it_off() {
        let none = Variables::default();
        let document = parse_query(fan_out(4, 10)).expect("parses");
        let error = check(&document, &none, 2000).expect_err("10,000 fields");
        assert_eq!(error.message, TOO_COMPLEX);
        assert!(check(&document, &none, 10_111).is_ok());
        assert!(check(&document, &none, 10_110).is_err());
        assert!(check(&document, &none, 0).is_ok());
        // Every operation of the document is counted, together: 2 + 4 fields.
        let two = parse_query("query A { me { id } } query B { a: me { id } b: me { id } }")
            .expect("parses");
        assert!(check(&two, &none, 5).is_err());
        assert!(check(&two, &none, 6).is_ok());
        // The variables reach the count.
        let page =
            parse_query("query($n: Int) { users(first: $n) { nodes { id } } }").expect("parses");
        let n = |n: i32| Variables::from_json(serde_json::json!({ "n": n }));
        assert!(check(&page, &n(98), 100).is_ok());
        assert!(check(&page, &n(99), 100).is_err());
    }

    #[test]
    fn nesting_past_the_bound_is_refused_not_followed() {
        let deep = |levels: usize| {
            let mut query = "{ ...F0 }\n".to_owned();
            for i in 0..levels {
                query.push_str(&format!("fragment F{i} on Query {{ ...F{} }}\n", i + 1));
            }
            query.push_str(&format!("fragment F{levels} on Query {{ t: __typename }}"));
            query
        };
        // The chain's last fragment is `levels + 1` deep, and its field's (empty) selection
        // one more.
        // (`levels + 1` spreads and the field.)
        assert_eq!(fields(&deep(MAX_NESTING - 2)), Some(MAX_NESTING));
        assert_eq!(fields(&deep(MAX_NESTING - 1)), None);
        let document = parse_query(deep(MAX_NESTING - 1)).expect("parses");
        assert!(check(&document, &Variables::default(), 2000).is_err());
        // Inline fragments count as a level each, from the root.
        let inline = |levels: usize| {
            format!(
                "{{ {}t: __typename{} }}",
                "... on Query { ".repeat(levels),
                " }".repeat(levels)
            )
        };
        assert_eq!(fields(&inline(MAX_NESTING - 1)), Some(MAX_NESTING));
        assert_eq!(fields(&inline(MAX_NESTING)), None);
    }
}

//! Response fields in the order the query selected them.
//!
//! The GraphQL spec serialises every object as an ordered map whose fields follow the selection
//! set ("Serialized Map Ordering"); clients and people reading GraphiQL rely on it. async-graphql
//! 7.2 collects an object's fields in the order they *finish* (`FuturesUnordered` in
//! `resolver_utils::container`), so a field that waits on the database (a DataLoader, a
//! look-ahead page, a count) lands after siblings that did not wait: `me { invitedUsers { … }
//! createdAt id }` came back as `createdAt, id, invitedUsers`.
//!
//! [`ResponseOrder`] puts every object of a response back in selection order, in one pass over
//! the response. The executor runs it for every operation (POST, GET, each operation of a JSON
//! batch, each event of a WebSocket subscription), so no resolver has to care. Once the
//! dependency collects fields in selection order again this pass finds everything in place.

use std::{collections::HashMap, sync::Arc};

use async_graphql::{
    Name, Positioned, Response, Value,
    indexmap::IndexMap,
    parser::types::{ExecutableDocument, FragmentDefinition, Selection, SelectionSet},
};

use super::operation::selected_operation;

/// Fragments nest at most this deep here. Validation refuses fragment cycles before anything
/// runs (and an unvalidated document has no data to order); this only keeps a mistake bounded.
const MAX_FRAGMENT_DEPTH: usize = 64;

type Fragments = HashMap<Name, Positioned<FragmentDefinition>>;

/// What a response must be ordered by: the request's document and the operation it runs.
pub struct ResponseOrder {
    plan: Option<(Arc<ExecutableDocument>, Option<String>)>,
}

impl ResponseOrder {
    /// Keeps what [`ResponseOrder::restore`] will need: the document shared with the
    /// executor's cache, not a copy. A document that does not parse (`None`) yields nothing to
    /// order (its response has no data).
    pub fn of(document: Option<Arc<ExecutableDocument>>, operation_name: Option<String>) -> Self {
        Self {
            plan: document.map(|document| (document, operation_name)),
        }
    }

    /// Reorders `response.data` to follow the operation's selection sets.
    pub fn restore(&self, response: &mut Response) {
        let Some((document, operation_name)) = &self.plan else {
            return;
        };
        let Some(operation) = selected_operation(document, operation_name.as_deref()) else {
            return;
        };
        reorder(
            &mut response.data,
            &[&operation.node.selection_set.node],
            &document.fragments,
        );
    }
}

/// Orders `value` (an object, a list of them, or a leaf) by the merged `sets`.
fn reorder(value: &mut Value, sets: &[&SelectionSet], fragments: &Fragments) {
    if !matches!(value, Value::Object(_) | Value::List(_)) {
        return;
    }
    let fields = collect_fields(sets, fragments);
    apply(value, &fields, fragments);
}

fn apply(value: &mut Value, fields: &[(&Name, Vec<&SelectionSet>)], fragments: &Fragments) {
    match value {
        // Every item of a list has the same selection: collected once, applied to each.
        Value::List(items) => {
            for item in items {
                apply(item, fields, fragments);
            }
        }
        Value::Object(map) => {
            let mut unordered = std::mem::take(map);
            let mut ordered = IndexMap::with_capacity(unordered.len());
            for (key, sub_selections) in fields {
                if let Some(mut field_value) = unordered.swap_remove(*key) {
                    if !sub_selections.is_empty() {
                        reorder(&mut field_value, sub_selections, fragments);
                    }
                    ordered.insert((*key).clone(), field_value);
                }
            }
            // Nothing should be left; if something is, it is kept rather than lost.
            ordered.extend(unordered);
            *map = ordered;
        }
        _ => {}
    }
}

/// The response keys of `sets` in selection order (first appearance wins, as in the spec's
/// CollectFields), each with the sub-selections of every field merged under that key.
fn collect_fields<'a>(
    sets: &[&'a SelectionSet],
    fragments: &'a Fragments,
) -> Vec<(&'a Name, Vec<&'a SelectionSet>)> {
    let mut fields = Vec::new();
    for set in sets {
        collect_into(set, fragments, &mut fields, 0);
    }
    fields
}

fn collect_into<'a>(
    set: &'a SelectionSet,
    fragments: &'a Fragments,
    fields: &mut Vec<(&'a Name, Vec<&'a SelectionSet>)>,
    depth: usize,
) {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => {
                let key = &field.node.response_key().node;
                let sub = &field.node.selection_set.node;
                let index = match fields.iter().position(|(name, _)| *name == key) {
                    Some(index) => index,
                    None => {
                        fields.push((key, Vec::new()));
                        fields.len() - 1
                    }
                };
                if !sub.items.is_empty() {
                    fields[index].1.push(sub);
                }
            }
            // Type conditions are not checked: a key a fragment would add on another type is
            // simply absent from the object, and absent keys are skipped.
            Selection::InlineFragment(fragment) if depth < MAX_FRAGMENT_DEPTH => {
                collect_into(
                    &fragment.node.selection_set.node,
                    fragments,
                    fields,
                    depth + 1,
                );
            }
            Selection::FragmentSpread(spread) if depth < MAX_FRAGMENT_DEPTH => {
                if let Some(fragment) = fragments.get(&spread.node.fragment_name.node) {
                    collect_into(
                        &fragment.node.selection_set.node,
                        fragments,
                        fields,
                        depth + 1,
                    );
                }
            }
            Selection::InlineFragment(_) | Selection::FragmentSpread(_) => {}
        }
    }
}

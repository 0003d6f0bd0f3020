//! The schema as the transports run it. Every request — POST, GET, and each operation sent over
//! a WebSocket — goes through [`GraphqlExecutor`], which parses the document once (async-graphql
//! keeps the parsed document in the request and does not parse it again), refuses a repeated
//! mutation field (`sensitive_fields`), a list or object given to a variable
//! (`scalar_variables`), and a document whose fragments and rows expand past the complexity
//! budget (`expanded_fields`), gives the operation its own DataLoaders (a cache never
//! outlives one operation, even on a long-lived socket), sends an introspection-only operation to
//! the introspection schema (its own depth limit, see [`introspection`](super::introspection)), and
//! records the operation's metrics.
//!
//! Doing this here rather than in async-graphql extensions matters for speed: once a schema has
//! any extension, every field of every row resolves through the extension chain.

use std::{sync::Arc, time::Instant};

use async_graphql::{Data, Executor, Request, Response, Value, parser::types::ExecutableDocument};
use futures_util::{StreamExt, stream, stream::BoxStream};
use sea_orm::DatabaseConnection;

use super::{
    AppSchema, documents::DocumentCache, expanded_fields, introspection, loaders::Loaders,
    operation_metrics, persisted::PersistedOperations, response_order::ResponseOrder,
    scalar_variables, sensitive_fields,
};

#[derive(Clone)]
pub struct GraphqlExecutor {
    schema: AppSchema,
    /// None when introspection is off: then every operation runs on `schema`.
    introspection: Option<AppSchema>,
    persisted: Arc<PersistedOperations>,
    /// Parsed documents by their text (`documents`): parsed once, not per request.
    documents: Arc<DocumentCache>,
    db: DatabaseConnection,
    /// `GRAPHQL_MAX_COMPLEXITY`, which also bounds the fields of the expanded document.
    max_complexity: usize,
}

/// What [`GraphqlExecutor::admit`] decided for a request.
struct Admitted<'a> {
    schema: &'a AppSchema,
    fields: Vec<operation_metrics::RootField>,
    /// The request's document (None: it does not parse), for the response order.
    document: Option<Arc<ExecutableDocument>>,
    /// The document is new to the cache: keep it once it has passed validation.
    keep: bool,
}

impl GraphqlExecutor {
    pub fn new(
        schema: AppSchema,
        introspection: Option<AppSchema>,
        persisted: PersistedOperations,
        db: DatabaseConnection,
        max_complexity: usize,
    ) -> Self {
        Self {
            schema,
            introspection,
            persisted: Arc::new(persisted),
            documents: Arc::default(),
            db,
            max_complexity,
        }
    }

    /// Persisted operations (APQ and the trusted manifest): the GET handler resolves a hash
    /// before its mutation check.
    pub fn persisted(&self) -> &PersistedOperations {
        &self.persisted
    }

    /// The checks every request passes before execution, its loaders, and the schema it runs
    /// on. A document that does not parse is left to the data schema, which answers with its
    /// own parse error.
    fn admit(&self, request: &mut Request) -> Result<Admitted<'_>, Box<Response>> {
        if let Err(error) = self.persisted.resolve(request) {
            return Err(Box::new(Response::from_errors(vec![error])));
        }
        request.data.insert(Loaders::new(&self.db));
        // A batch's request span is named `batch`; otherwise the operation names it.
        let traced = crate::otel::on()
            && !request
                .data
                .contains_key(&std::any::TypeId::of::<crate::otel::Batched>());
        let Some(parsed) = self.documents.parse(request) else {
            return Ok(Admitted {
                schema: &self.schema,
                fields: Vec::new(),
                document: None,
                keep: false,
            });
        };
        let operation_name = request.operation_name.as_deref();
        let document = &*parsed.document;
        if traced {
            crate::otel::name_operation(document, operation_name);
        }
        // The document rules, in order; the expanded count runs for a cached document too,
        // since `first: $n` makes it depend on the variables.
        let checked = sensitive_fields::check(document)
            .and_then(|()| scalar_variables::check(document, &request.variables))
            .and_then(|()| {
                expanded_fields::check(document, &request.variables, self.max_complexity)
            });
        if let Err(error) = checked {
            return Err(Box::new(Response::from_errors(vec![error])));
        }
        let schema = match &self.introspection {
            Some(introspection)
                if introspection::asks_only_introspection(document, operation_name) =>
            {
                introspection
            }
            _ => &self.schema,
        };
        Ok(Admitted {
            schema,
            fields: operation_metrics::root_fields(document, operation_name),
            keep: !parsed.cached,
            document: Some(parsed.document),
        })
    }
}

/// The document reached execution: parsing, validation and variable coercion passed (their
/// errors carry no `path`; an execution error that nulled the whole result has one).
fn validated(response: &Response) -> bool {
    response.data != Value::Null
        || response.errors.is_empty()
        || response.errors.iter().any(|error| !error.path.is_empty())
}

impl Executor for GraphqlExecutor {
    async fn execute(&self, mut request: Request) -> Response {
        let Admitted {
            schema,
            fields,
            document,
            keep,
        } = match self.admit(&mut request) {
            Ok(admitted) => admitted,
            Err(refused) => return *refused,
        };
        // The text is only needed again to keep a new document; most requests skip the copy.
        let query = keep.then(|| request.query.clone());
        let order = ResponseOrder::of(document.clone(), request.operation_name.clone());
        let started = Instant::now();
        let mut response = schema.execute(request).await;
        if let (Some(query), Some(document)) = (query, document)
            && validated(&response)
        {
            self.documents.keep(&query, document);
        }
        order.restore(&mut response);
        operation_metrics::record(&fields, &response, started.elapsed().as_secs_f64());
        response
    }

    /// Operations over a WebSocket. Queries and mutations answer once and are measured like
    /// the others; a subscription's events are not operations and are not counted.
    fn execute_stream(
        &self,
        mut request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        // A subscription's document is taken from the cache when there, never added to it.
        let Admitted {
            schema,
            fields,
            document,
            ..
        } = match self.admit(&mut request) {
            Ok(admitted) => admitted,
            Err(refused) => return stream::once(async move { *refused }).boxed(),
        };
        let order = ResponseOrder::of(document, request.operation_name.clone());
        let started = Instant::now();
        schema
            .execute_stream_with_session_data(request, session_data.unwrap_or_default())
            .map(move |mut response| {
                order.restore(&mut response);
                response
            })
            .inspect(move |response| {
                operation_metrics::record(&fields, response, started.elapsed().as_secs_f64());
            })
            .boxed()
    }
}

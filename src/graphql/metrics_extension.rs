//! Counts and times every root field (`requestCode`, `verifyCode`, `me`, …) by outcome: `ok`
//! or the error's `extensions.code`.

use std::{sync::Arc, time::Instant};

use async_graphql::{
    ServerResult, Value,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo},
};

pub struct FieldMetrics;

impl ExtensionFactory for FieldMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(FieldMetricsExtension)
    }
}

struct FieldMetricsExtension;

#[async_trait::async_trait]
impl Extension for FieldMetricsExtension {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if info.path_node.parent.is_some() || info.is_for_introspection {
            return next.run(ctx, info).await;
        }
        let field = info.name.to_owned();
        let started = Instant::now();
        let result = next.run(ctx, info).await;
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(err) => err
                .extensions
                .as_ref()
                .and_then(|ext| ext.get("code"))
                .and_then(|code| match code {
                    Value::String(code) => Some(code.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| "error".to_owned()),
        };
        crate::metrics::field_resolved(&field, &outcome, started.elapsed().as_secs_f64());
        result
    }
}

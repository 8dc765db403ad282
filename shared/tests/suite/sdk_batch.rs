//! The suite's PartiQL batch transport: the statements through the SDK's `batch_execute_statement`,
//! so that the tests script DynamoDB's answers with aws-smithy-mocks, as they do for every other
//! call. The functions send the same statements with `store::partiql::DirectBatch`, whose request
//! and answers are tested in its own module and against the local stack.

use std::sync::Arc;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{BatchStatementRequest, ReturnValuesOnConditionCheckFailure};
use dataflows_shared::store::partiql::{Answer, BatchError, PartiqlBatch, Statement};
use futures::future::BoxFuture;

pub struct SdkBatch(pub aws_sdk_dynamodb::Client);

impl SdkBatch {
    pub fn of(client: &aws_sdk_dynamodb::Client) -> Arc<dyn PartiqlBatch> {
        Arc::new(SdkBatch(client.clone()))
    }
}

impl PartiqlBatch for SdkBatch {
    fn execute(&self, statements: Vec<Statement>) -> BoxFuture<'_, Result<Vec<Answer>, BatchError>> {
        Box::pin(async move {
            let requests = statements
                .into_iter()
                .map(|s| {
                    BatchStatementRequest::builder()
                        .statement(s.text())
                        .set_parameters(Some(s.parameters()))
                        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                        .build()
                        .expect("a statement is set")
                })
                .collect();
            match self
                .0
                .batch_execute_statement()
                .set_statements(Some(requests))
                .send()
                .await
            {
                Ok(out) => Ok(out
                    .responses()
                    .iter()
                    .map(|r| match r.error() {
                        None => Answer::Applied,
                        Some(e) => Answer::Refused {
                            code: e.code().map_or("", |c| c.as_str()).to_string(),
                            message: e.message().unwrap_or_default().to_string(),
                            item: e.item().cloned(),
                        },
                    })
                    .collect()),
                Err(e) => Err(match (e.code(), e.raw_response()) {
                    (Some(code), Some(raw)) => BatchError::Service {
                        status: raw.status().as_u16(),
                        code: code.to_string(),
                        message: e.message().unwrap_or_default().to_string(),
                    },
                    _ => BatchError::Transport(aws_sdk_dynamodb::Error::from(e).to_string()),
                }),
            }
        })
    }
}

//! The deployment's seal key (see `delivery::task`): 32 random bytes in one State item, created by
//! the first function that needs it (a conditional put, so concurrent first uses agree) and read
//! once per execution environment, on the first internal message, never at init.

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use futures::FutureExt;
use tokio::sync::OnceCell;

use crate::delivery::task::SealKey;
use crate::store::attributes::s;
use crate::store::keys;

#[derive(Debug, thiserror::Error)]
pub enum SealKeyError {
    #[error("reading the seal key from {table}: {reason}")]
    Read { table: String, reason: String },
    #[error("creating the seal key in {table}: {reason}")]
    Create { table: String, reason: String },
    #[error("the seal key item in {table} is not 32 bytes of binary")]
    Malformed { table: String },
}

pub struct SealKeys {
    pub client: crate::aws::DynamoDb,
    pub table: String,
    cell: OnceCell<SealKey>,
}

impl SealKeys {
    pub fn new(client: impl Into<crate::aws::DynamoDb>, table: String) -> Self {
        SealKeys {
            client: client.into(),
            table,
            cell: OnceCell::new(),
        }
    }

    /// A store that already holds `key` (tests, benchmarks).
    pub fn with_key(client: impl Into<crate::aws::DynamoDb>, table: String, key: SealKey) -> Self {
        SealKeys {
            client: client.into(),
            table,
            cell: OnceCell::new_with(Some(key)),
        }
    }

    pub async fn get(&self) -> Result<&SealKey, SealKeyError> {
        self.cell.get_or_try_init(|| self.load_or_create()).await
    }

    async fn load_or_create(&self) -> Result<SealKey, SealKeyError> {
        if let Some(key) = self.read().await? {
            return Ok(key);
        }
        let bytes: [u8; 32] = rand::random();
        let key = keys::seal_key();
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(key.pk))
            .item("sk", s(key.sk))
            .item("key", AttributeValue::B(Blob::new(bytes.to_vec())))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .boxed()
            .await;
        match put {
            Ok(_) => {
                tracing::info!("created the deployment's seal key for internal messages");
                Ok(SealKey::new(bytes))
            }
            Err(e) => {
                let e = aws_sdk_dynamodb::Error::from(e);
                if matches!(e, aws_sdk_dynamodb::Error::ConditionalCheckFailedException(_)) {
                    // Another environment created it first: use theirs.
                    self.read().await?.ok_or_else(|| SealKeyError::Malformed {
                        table: self.table.clone(),
                    })
                } else {
                    Err(SealKeyError::Create {
                        table: self.table.clone(),
                        reason: e.to_string(),
                    })
                }
            }
        }
    }

    async fn read(&self) -> Result<Option<SealKey>, SealKeyError> {
        let key = keys::seal_key();
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(key.pk))
            .key("sk", s(key.sk))
            .consistent_read(true)
            .send()
            .boxed()
            .await
            .map_err(|e| SealKeyError::Read {
                table: self.table.clone(),
                reason: aws_sdk_dynamodb::Error::from(e).to_string(),
            })?;
        let Some(item) = got.item else {
            return Ok(None);
        };
        match item.get("key") {
            Some(AttributeValue::B(blob)) => <[u8; 32]>::try_from(blob.as_ref())
                .map(|b| Some(SealKey::new(b)))
                .map_err(|_| SealKeyError::Malformed {
                    table: self.table.clone(),
                }),
            _ => Err(SealKeyError::Malformed {
                table: self.table.clone(),
            }),
        }
    }
}

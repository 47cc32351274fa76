//! What the AWS adapters (Location Service, DynamoDB) share: the SDK configuration.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::{Credentials, Region};

/// The usual AWS configuration (environment, profile, instance role), with the region and
/// static credentials overridden when given (an endpoint override with dummy keys, say).
pub(crate) async fn shared_config(
    region: Option<&str>,
    credentials: Option<&(String, String)>,
) -> SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    if let Some((key, secret)) = credentials {
        loader = loader.credentials_provider(Credentials::new(key, secret, None, None, "c360"));
    }
    loader.load().await
}

import { GetSecretValueCommand, type SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import type { Secrets } from "../core/approval.js";
import { ConfigError } from "../core/errors.js";

/** Secrets Manager behind the {@link Secrets} port. Values are returned, never logged nor put in errors. */
export class SecretsManagerSecrets implements Secrets {
  constructor(private readonly client: SecretsManagerClient) {}

  async get(secretId: string): Promise<string> {
    const out = await this.client.send(new GetSecretValueCommand({ SecretId: secretId }));
    if (out.SecretString === undefined) throw new ConfigError(`secret ${secretId} has no string value`);
    return out.SecretString;
  }
}

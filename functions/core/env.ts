import { ConfigError } from "./errors.js";

/**
 * Reading settings from an environment, shared by every configuration loader (replication,
 * failover, approval): a blank value counts as unset, a bad one fails with the variable's name.
 */
export type Env = Record<string, string | undefined>;

export function optional(env: Env, name: string): string | undefined {
  return env[name]?.trim() || undefined;
}

export function required(env: Env, name: string): string {
  const v = optional(env, name);
  if (v === undefined) throw new ConfigError(`${name} is required but not set`);
  return v;
}

/** A whole number in min..max; unset gives `dflt` (undefined without one). */
export function integer(env: Env, name: string, min: number, max: number): number | undefined;
export function integer(env: Env, name: string, min: number, max: number, dflt: number): number;
export function integer(env: Env, name: string, min: number, max: number, dflt?: number): number | undefined {
  const raw = optional(env, name);
  if (raw === undefined) return dflt;
  if (!/^\d+$/.test(raw)) throw new ConfigError(`${name} must be an integer, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** A whole number in min..max that must be set. */
export function requiredInteger(env: Env, name: string, min: number, max: number): number {
  const n = integer(env, name, min, max);
  if (n === undefined) throw new ConfigError(`${name} is required but not set`);
  return n;
}

export function oneOf<T extends string>(env: Env, name: string, values: readonly T[], dflt: T): T {
  const v = optional(env, name) ?? dflt;
  if (!values.includes(v as T))
    throw new ConfigError(`${name} must be one of ${values.join(", ")}, got "${v}"`);
  return v as T;
}

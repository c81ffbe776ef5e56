import type { StoredBackup } from "../../functions/core/ports.js";

export const MINUTE = 60_000;
/** `2026-11-27T<hh:mm>:00Z`. */
export const at = (hhmm: string) => `2026-11-27T${hhmm}:00Z`;

/** A registered, Completed backup of the 15-minute schedule, started at `start`, with Velero's 1 h TTL. */
export function storedBackup(name: string, start: string, over: Partial<StoredBackup> = {}): StoredBackup {
  return {
    name,
    schedule: "cbci-dr",
    phase: "Completed",
    startTimestamp: start,
    completionTimestamp: start.replace(/:00Z$/, ":40Z"),
    expiration: new Date(Date.parse(start) + 60 * MINUTE).toISOString(),
    errors: 0,
    warnings: 0,
    ...over,
  };
}

/**
 * Two source regions (two primary clusters, each with its own Velero schedule and its own zones)
 * replicating into one failover region: each backup is judged and published with its own region's
 * zones, never the first configured region's.
 */
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import type { VeleroConfig } from "../../functions/core/config.js";
import { gunzipJson, parseVolumeSnapshots } from "../../functions/core/velero.js";
import { SimulatedPrimary } from "../../local/primary.js";
import { SimulatedVelero } from "../../local/velero.js";
import { makePlane, useMoto } from "../support/harness.js";

const moto = useMoto();

const VELERO: VeleroConfig = {
  bucket: "velero-two-regions",
  prefix: "velero",
  failoverBucket: "velero-two-regions",
  failoverPrefix: "failover",
  // one map over both source regions: each backup takes its own region's entries
  zoneMap: { "us-east-1a": "us-west-2a", "eu-west-1a": "us-west-2c" },
  allowedWarnings: 0,
  combinedIds: false,
};

describe("several source regions", () => {
  it("publishes each region's backups with that region's zones; both DR-ready", async () => {
    // arrange: a primary cluster in each region, feeding the same failover bus
    const { plane, primary: east } = await makePlane(moto(), {
      copyDelayMs: 1,
      config: { sourceRegions: ["us-east-1", "eu-west-1"], velero: VELERO },
    });
    const west = new SimulatedPrimary(
      moto().endpoint,
      "eu-west-1",
      plane.clients.events,
      plane.resources.busName,
      "cbci-primary-eu",
    );
    const velero = new SimulatedVelero(plane.clients.s3, VELERO);
    await east.addControllers(2);
    await west.addControllers(3);
    const start = new Date(Date.now() - 60_000);

    // act: one backup in each region (eu-west-1's first, so "the first configured" cannot pass)
    const backups = [
      { name: "cbci-eu-20261203120000", primary: west, az: "eu-west-1a", failoverAz: "us-west-2c" },
      { name: "cbci-us-20261203120000", primary: east, az: "us-east-1a", failoverAz: "us-west-2a" },
    ];
    const taken = new Map<string, string[]>();
    for (const b of backups) {
      const snaps = await b.primary.takeBackup(b.name, { schedule: b.name.slice(0, 7) });
      taken.set(
        b.name,
        snaps.map((s) => s.snapshotId),
      );
      await velero.writeBackup(
        { name: b.name, schedule: b.name.slice(0, 7), start, controllers: b.primary.controllers },
        snaps,
        b.az,
      );
    }
    await plane.settle();

    // assert: both DR-ready, each record naming a copy in its own region's mapped failover zone
    for (const b of backups) {
      expect(await plane.rt.ledger.getBackup(b.name), b.name).toMatchObject({
        verdict: "dr-ready",
        failoverPrefix: `failover/backups/${b.name}/`,
      });
      const o = await plane.clients.s3.send(
        new GetObjectCommand({
          Bucket: VELERO.failoverBucket,
          Key: `failover/backups/${b.name}/${b.name}-volumesnapshots.json.gz`,
        }),
      );
      const records = parseVolumeSnapshots(
        gunzipJson((await o.Body?.transformToByteArray()) ?? new Uint8Array(), "volumesnapshots"),
      );
      expect(records).toHaveLength(b.primary.controllers.length);
      for (const r of records) expect(r.volumeAZ, b.name).toBe(b.failoverAz);
      const copies = [...(await plane.rt.ledger.getSnapshots(taken.get(b.name) ?? [])).values()];
      expect(copies.map((c) => c.sourceRegion)).toEqual(copies.map(() => b.primary.region));
      expect(new Set(records.map((r) => r.providerSnapshotID))).toEqual(
        new Set(copies.map((c) => c.copySnapshotId)),
      );
    }
  });
});

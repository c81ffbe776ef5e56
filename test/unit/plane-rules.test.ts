import { describe, expect, it } from "vitest";
import {
  SOURCE_REGION_TAG,
  SOURCE_SNAPSHOT_TAG,
  SOURCE_VOLUME_TAG,
  type Tags,
  VELERO_BACKUP_TAG,
  VELERO_PV_TAG,
  VELERO_SCHEDULE_TAG,
} from "../../functions/core/model.js";
import { copyTags, ineligibility } from "../../functions/core/plane.js";

const SNAP = "snap-0a1b2c3d4e5f60718";
const VOL = "vol-0f1e2d3c4b5a69788";

/** A source snapshot as copyTags sees it. */
function source(tags: Tags) {
  return { snapshotId: SNAP, region: "us-east-1", volumeId: VOL, tags };
}

/** The tags Velero puts on every snapshot it takes. */
function veleroTags(extra: Tags = {}): Tags {
  return {
    [VELERO_BACKUP_TAG]: "cbci-dr-20261127120000",
    [VELERO_PV_TAG]: "pvc-3f2a",
    [VELERO_SCHEDULE_TAG]: "cbci-dr",
    "velero.io/storage-location": "default",
    ...extra,
  };
}

/** `count` tags named tag-00, tag-01, ... */
function manyTags(count: number): Tags {
  return Object.fromEntries(
    Array.from({ length: count }, (_, i) => [`tag-${String(i).padStart(2, "0")}`, `v${i}`]),
  );
}

const OURS = {
  [SOURCE_SNAPSHOT_TAG]: SNAP,
  [SOURCE_REGION_TAG]: "us-east-1",
  [SOURCE_VOLUME_TAG]: VOL,
};

describe("copyTags", () => {
  it("keeps every source tag and adds ours", () => {
    // arrange
    const tags = veleroTags({ Name: "jenkins-home", "kubernetes.io/created-for/pvc/name": "jenkins-home" });
    // act
    const out = copyTags(source(tags));
    // assert
    expect(out).toEqual({ ...tags, ...OURS });
  });

  it("never lets a source tag override ours", () => {
    // arrange: a source snapshot that claims to be a copy of something else
    const tags = veleroTags({
      [SOURCE_SNAPSHOT_TAG]: "snap-forged",
      [SOURCE_REGION_TAG]: "eu-west-1",
      [SOURCE_VOLUME_TAG]: "vol-forged",
    });
    // act
    const out = copyTags(source(tags));
    // assert
    expect(out[SOURCE_SNAPSHOT_TAG]).toBe(SNAP);
    expect(out[SOURCE_REGION_TAG]).toBe("us-east-1");
    expect(out[SOURCE_VOLUME_TAG]).toBe(VOL);
  });

  it("drops aws: tags, which cannot be set", () => {
    // arrange
    const tags = veleroTags({ "aws:backup:source-resource": "x", "aws:cloudformation:stack-name": "y" });
    // act
    const out = copyTags(source(tags));
    // assert
    expect(Object.keys(out).filter((k) => k.startsWith("aws:"))).toEqual([]);
    expect(Object.keys(out)).toHaveLength(Object.keys(veleroTags()).length + 3);
  });

  it("keeps at most 50 tags, Velero's and ours always among them", () => {
    // arrange: 60 other tags listed before Velero's
    const tags = { ...manyTags(60), ...veleroTags() };
    // act
    const out = copyTags(source(tags));
    // assert
    expect(Object.keys(out)).toHaveLength(50);
    expect(out).toMatchObject(OURS);
    expect(out).toMatchObject(veleroTags());
    expect(Object.keys(out).filter((k) => k.startsWith("tag-"))).toEqual(Object.keys(manyTags(43)));
  });

  it("puts Velero's tags before the others", () => {
    // arrange
    const tags = { ...manyTags(3), ...veleroTags() };
    // act
    const keys = Object.keys(copyTags(source(tags)));
    // assert: ours, then Velero's, then the rest in their source order
    expect(keys).toEqual([...Object.keys(OURS), ...Object.keys(veleroTags()), "tag-00", "tag-01", "tag-02"]);
  });

  it("keeps all 47 source tags that fit beside ours", () => {
    // arrange
    const tags = { ...veleroTags(), ...manyTags(43) };
    // act
    const out = copyTags(source(tags));
    // assert
    expect(Object.keys(out)).toHaveLength(50);
    expect(out).toMatchObject(tags);
  });

  it("keeps source tags whose keys name Object.prototype members", () => {
    // arrange
    const tags = veleroTags({ constructor: "x", toString: "y", hasOwnProperty: "z" });
    // act
    const out = copyTags(source(tags));
    // assert
    expect(out).toMatchObject({ constructor: "x", toString: "y", hasOwnProperty: "z" });
  });
});

describe("ineligibility", () => {
  const noFilters = { includeTags: {}, excludeTags: {} };

  it("accepts a Velero snapshot when no filter is configured", () => {
    // arrange
    const tags = veleroTags();
    // act
    const why = ineligibility(tags, noFilters);
    // assert
    expect(why).toBeUndefined();
  });

  it.each<Tags>([{}, { [VELERO_BACKUP_TAG]: "" }, { Name: "hand-made", [VELERO_PV_TAG]: "pvc-1" }])(
    "rejects a snapshot without a velero.io/backup tag: %j",
    (tags: Tags) => {
      // arrange / act
      const why = ineligibility(tags, noFilters);
      // assert
      expect(why).toContain(VELERO_BACKUP_TAG);
    },
  );

  it("requires every include tag to match", () => {
    // arrange
    const config = { includeTags: { "velero.io/storage-location": "default", env: "prod" }, excludeTags: {} };
    // act
    const matching = ineligibility(veleroTags({ env: "prod" }), config);
    const wrongValue = ineligibility(veleroTags({ env: "dev" }), config);
    const missing = ineligibility(veleroTags(), config);
    // assert
    expect(matching).toBeUndefined();
    expect(wrongValue).toContain("env");
    expect(missing).toContain("env");
  });

  it("rejects a snapshot matching any exclude tag", () => {
    // arrange
    const config = { includeTags: {}, excludeTags: { "dr.skip": "true", env: "scratch" } };
    // act
    const skipped = ineligibility(veleroTags({ env: "scratch" }), config);
    const otherValue = ineligibility(veleroTags({ env: "prod", "dr.skip": "false" }), config);
    // assert
    expect(skipped).toContain("env");
    expect(otherValue).toBeUndefined();
  });

  it("applies the exclude filter to snapshots the include filter lets through", () => {
    // arrange
    const config = { includeTags: { env: "prod" }, excludeTags: { "dr.skip": "true" } };
    // act
    const why = ineligibility(veleroTags({ env: "prod", "dr.skip": "true" }), config);
    // assert
    expect(why).toContain("dr.skip");
  });
});

/**
 * Whether two canonical sign bytes (a CanonicalVote or CanonicalProposal, length-delimited)
 * differ only in their timestamp: CometBFT's FilePV then returns the stored signature with
 * the stored timestamp instead of refusing (privval/file.go checkVotesOnlyDifferByTimestamp,
 * checkProposalsOnlyDifferByTimestamp). Anything unparsable counts as "differs".
 */
import { ProtoReader, WireType } from '../protobuf/reader.js';

const PROPOSAL_TYPE = 32;

/** The top-level fields of a canonical message except its timestamp, as comparable strings. */
function fieldsWithoutTimestamp(signBytes: Uint8Array): string[] | null {
  try {
    // The uvarint length prefix (protoio.MarshalDelimited) must cover exactly the rest.
    let prefix = 0;
    while (prefix < signBytes.length && (signBytes[prefix]! & 0x80) !== 0) prefix++;
    prefix++;
    const len = Number(new ProtoReader(signBytes).uvarint64());
    if (prefix + len !== signBytes.length) return null;
    const body = signBytes.subarray(prefix);
    const r = new ProtoReader(body);
    const fields: Array<[number, string]> = [];
    let type = 0;
    while (!r.done) {
      const { field, wireType } = r.tag();
      let value: string;
      if (wireType === WireType.varint) {
        const v = r.uint64();
        if (field === 1) type = Number(v);
        value = v.toString();
      } else if (wireType === WireType.len) value = Buffer.from(r.bytes()).toString('hex');
      else if (wireType === WireType.i64) value = r.sfixed64().toString();
      else return null;
      fields.push([field, `${field}:${wireType}:${value}`]);
    }
    // CanonicalVote: timestamp is field 5; CanonicalProposal (type 32): field 6.
    const timestampField = type === PROPOSAL_TYPE ? 6 : 5;
    return fields.filter(([f]) => f !== timestampField).map(([, s]) => s);
  } catch {
    return null;
  }
}

export function onlyTimestampDiffers(stored: Uint8Array, requested: Uint8Array): boolean {
  const a = fieldsWithoutTimestamp(stored);
  const b = fieldsWithoutTimestamp(requested);
  return a !== null && b !== null && a.length === b.length && a.every((x, i) => x === b[i]);
}

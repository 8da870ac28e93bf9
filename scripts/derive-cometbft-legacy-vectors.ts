/**
 * Derives CometBFT/Tendermint v0.34 and v0.37 test vectors from the *upstream protobuf
 * definitions* of those versions, with an encoder that is not ours (protobufjs), and
 * writes them to test/vectors/cometbft-legacy-sign-bytes.json:
 *
 * - vote and proposal sign bytes: `CanonicalVote` / `CanonicalProposal`
 *   (proto/tendermint/types/canonical.proto), built as types/canonical.go does and
 *   length-prefixed as `protoio.MarshalDelimited` does (types/vote.go `VoteSignBytes`,
 *   types/proposal.go `ProposalSignBytes`);
 * - privval `Message` bodies (proto/tendermint/privval/types.proto) and their wire frames
 *   (uvarint length ‖ body: libs/protoio's delimited writer, privval/signer_endpoint.go).
 *
 * The .proto files are read from upstream trees given on the command line; none of their
 * text is copied into this repository. Each tree is a `proto/` directory extracted from an
 * upstream tag, e.g.
 *
 *   G=/path/to/cometbft.git; D=/tmp/upstream-protos
 *   mkdir -p $D/v0.34.35 $D/v0.37.18 $D/v0.34.35-third_party
 *   git --git-dir=$G archive v0.34.35 proto | tar -x -C $D/v0.34.35
 *   git --git-dir=$G archive v0.37.18 proto | tar -x -C $D/v0.37.18
 *   git --git-dir=$G archive v0.34.35 third_party/proto | tar -x -C $D/v0.34.35-third_party
 *
 *   node --import tsx scripts/derive-cometbft-legacy-vectors.ts \
 *     --tree version=v0.34,repo=cometbft/cometbft,tag=v0.34.35,commit=<sha>,root=$D/v0.34.35/proto,include=$D/v0.34.35-third_party/third_party/proto \
 *     --tree version=v0.37,repo=cometbft/cometbft,tag=v0.37.18,commit=<sha>,root=$D/v0.37.18/proto,include=$D/v0.34.35-third_party/third_party/proto \
 *     (optional in --tree: include_source=<text> names where the include directories came from, e.g.
 *      include_source=cometbft/cometbft@v0.34.35:third_party/proto/)
 *     [--tree version=v0.34,repo=tendermint/tendermint,...]   (further trees per version: cross-checks, must give identical bytes)
 *     [--shared-vectors ../shared/vectors/cometbft/sign_bytes/upstream_sign_bytes.json] \
 *     [--out test/vectors/cometbft-legacy-sign-bytes.json] [--date YYYY-MM-DD]
 *
 * The first tree given for a version is its primary source; `include` directories are
 * searched after `root` (v0.37 resolves gogoproto through buf, so its tree has no
 * gogo.proto; gogo.proto only declares options and never changes the wire format).
 * google/protobuf/timestamp.proto is protobufjs's bundled copy, descriptor.proto (imported
 * by gogo.proto) protobufjs's shipped file.
 *
 * protobufjs and Go's gogoproto differ in one way that matters here, and the script
 * follows Go: protobufjs writes every field present in the object, also zeros, and omits
 * absent message fields; gogoproto omits proto3 zero scalars/empty bytes and strings, and
 * always writes `(gogoproto.nullable) = false` message fields, even when empty (`12 00`),
 * and a non-nullable `stdtime` Timestamp as Go's zero time (0001-01-01T00:00:00Z) when
 * unset. `goShape` turns an input into exactly the fields Go's generated `Marshal` writes,
 * reading the nullable/stdtime options from the loaded .proto files. Upstream Go test
 * vectors (types/vote_test.go, privval/msgs_test.go, hard-coded below with their
 * location) are reproduced first, and the script stops if any differs.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { ed25519 } from '@noble/curves/ed25519.js';

const require = createRequire(import.meta.url);
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SCRIPT_PATH = 'scripts/derive-cometbft-legacy-vectors.ts';
const PROTOBUFJS_DIR = path.dirname(require.resolve('protobufjs/package.json'));
const PROTOBUFJS_VERSION = (JSON.parse(fs.readFileSync(path.join(PROTOBUFJS_DIR, 'package.json'), 'utf8')) as { version: string }).version;

type Version = 'v0.34' | 'v0.37';
const VERSIONS: readonly Version[] = ['v0.34', 'v0.37'];

interface TreeSpec {
  version: Version;
  repo: string;
  tag: string;
  commit: string;
  root: string;
  include: string[];
  /** Where the include directories came from, for the provenance record. */
  includeSource: string | undefined;
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

interface Args {
  trees: TreeSpec[];
  sharedVectors: string | undefined;
  out: string;
  date: string;
}

function usage(msg: string): never {
  console.error(`derive-cometbft-legacy-vectors: ${msg}\n(see the header of ${SCRIPT_PATH} for usage)`);
  process.exit(2);
}

function parseTree(s: string): TreeSpec {
  const kv = new Map<string, string[]>();
  for (const part of s.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) usage(`--tree part "${part}" is not key=value`);
    const k = part.slice(0, eq);
    kv.set(k, [...(kv.get(k) ?? []), part.slice(eq + 1)]);
  }
  const one = (k: string): string => {
    const v = kv.get(k);
    if (!v || v.length !== 1 || !v[0]) usage(`--tree needs exactly one ${k}=`);
    return v[0];
  };
  const version = one('version');
  if (version !== 'v0.34' && version !== 'v0.37') usage(`unsupported version ${version}`);
  const commit = one('commit');
  if (!/^[0-9a-f]{40}$/.test(commit)) usage(`commit must be 40 hex digits, got ${commit}`);
  const root = path.resolve(one('root'));
  const include = (kv.get('include') ?? []).map((d) => path.resolve(d));
  for (const d of [root, ...include]) if (!fs.statSync(d, { throwIfNoEntry: false })?.isDirectory()) usage(`no directory ${d}`);
  const includeSource = kv.get('include_source')?.[0];
  return { version, repo: one('repo'), tag: one('tag'), commit, root, include, includeSource };
}

function parseArgs(argv: string[]): Args {
  const trees: TreeSpec[] = [];
  let sharedVectors: string | undefined;
  let out = path.join(REPO_ROOT, 'test/vectors/cometbft-legacy-sign-bytes.json');
  let date = new Date().toISOString().slice(0, 10);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v;
    };
    if (a === '--tree') trees.push(parseTree(next()));
    else if (a === '--shared-vectors') sharedVectors = path.resolve(next());
    else if (a === '--out') out = path.resolve(next());
    else if (a === '--date') date = next();
    else usage(`unknown argument ${a}`);
  }
  for (const v of VERSIONS) if (!trees.some((t) => t.version === v)) usage(`no --tree for ${v}`);
  return { trees, sharedVectors, out, date };
}

// ---------------------------------------------------------------------------
// Loading the upstream definitions
// ---------------------------------------------------------------------------

interface LoadedFile {
  /** The import path, e.g. tendermint/types/canonical.proto. */
  path: string;
  /** Where it came from: the tree root, an include directory, or protobufjs. */
  from: string;
  sha256: string | null;
}

interface Loaded {
  spec: TreeSpec;
  root: protobuf.Root;
  files: LoadedFile[];
}

const ENTRY_FILES = ['tendermint/types/canonical.proto', 'tendermint/privval/types.proto'];

function sha256Hex(b: Uint8Array | string): string {
  return createHash('sha256').update(b).digest('hex');
}

function loadTree(spec: TreeSpec): Loaded {
  const dirs: { dir: string; label: string }[] = [
    { dir: spec.root, label: `${spec.repo}@${spec.tag}:proto/` },
    ...spec.include.map((dir) => ({ dir, label: spec.includeSource ?? `include ${path.basename(dir)}` })),
    { dir: PROTOBUFJS_DIR, label: `protobufjs@${PROTOBUFJS_VERSION} (shipped file)` },
  ];
  const origins = new Map<string, LoadedFile>();
  const root = new protobuf.Root();
  root.resolvePath = (_origin: string, target: string): string => {
    for (const { dir, label } of dirs) {
      const p = path.join(dir, target);
      if (fs.existsSync(p)) {
        origins.set(p, { path: target, from: label, sha256: sha256Hex(fs.readFileSync(p)) });
        return p;
      }
    }
    throw new Error(`${spec.repo}@${spec.tag}: cannot resolve import ${target} in ${dirs.map((d) => d.dir).join(', ')}`);
  };
  root.loadSync(ENTRY_FILES, { keepCase: true });
  root.resolveAll();
  const files = root.files.map(
    (f): LoadedFile => origins.get(f) ?? { path: f, from: `protobufjs@${PROTOBUFJS_VERSION} (bundled definition, src/common.js)`, sha256: null },
  );
  return { spec, root, files };
}

// ---------------------------------------------------------------------------
// Go (gogoproto) field presence
// ---------------------------------------------------------------------------

/** Go's zero time.Time as google.protobuf.Timestamp seconds. */
const GO_ZERO_TIME_SECONDS = '-62135596800';
const INT64_TYPES = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);

type Json = string | number | boolean | null | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

function isZeroScalar(field: protobuf.Field, v: Json): boolean {
  if (field.type === 'bytes' || field.type === 'string') return v === '';
  if (field.type === 'bool') return v === false;
  if (INT64_TYPES.has(field.type)) return BigInt(v as string | number) === 0n;
  return v === 0; // 32-bit integers, enums, floats
}

/**
 * The input as Go's generated Marshal sees it: zero scalars dropped, non-nullable message
 * fields filled in, oneof members kept whenever set. Bytes are hex in the input and
 * Buffers in the result; 64-bit integers decimal strings (protobufjs turns them into Long).
 */
function goShape(type: protobuf.Type, value: JsonObject, where: string): Record<string, unknown> {
  for (const k of Object.keys(value)) if (!type.fields[k]) throw new Error(`${where}: ${type.name} has no field ${k}`);
  const out: Record<string, unknown> = {};
  for (const field of type.fieldsArray) {
    let v = value[field.name];
    const at = `${where}.${field.name}`;
    if (field.repeated || field.map) {
      if (v !== undefined) throw new Error(`${at}: repeated fields are not used here`);
      continue;
    }
    const opts = field.options ?? {};
    const rt = field.resolvedType;
    if (rt instanceof protobuf.Type) {
      if (v === undefined && opts['(gogoproto.nullable)'] === false && !field.partOf) {
        v = opts['(gogoproto.stdtime)'] === true ? { seconds: GO_ZERO_TIME_SECONDS } : {};
      }
      if (v === undefined || v === null) continue;
      if (typeof v !== 'object' || Array.isArray(v)) throw new Error(`${at}: expected an object`);
      out[field.name] = goShape(rt, v, at);
      continue;
    }
    if (v === undefined || v === null) continue;
    // A oneof member has explicit presence in Go (`if m.Ed25519 != nil`): kept even if empty.
    if (!field.partOf && isZeroScalar(field, v)) continue;
    if (field.type === 'bytes') {
      if (typeof v !== 'string' || !/^([0-9a-f]{2})*$/.test(v)) throw new Error(`${at}: bytes must be lowercase hex`);
      out[field.name] = Buffer.from(v, 'hex');
    } else if (INT64_TYPES.has(field.type)) {
      out[field.name] = BigInt(v as string | number).toString();
    } else out[field.name] = v;
  }
  return out;
}

function lookupType(root: protobuf.Root, name: string): protobuf.Type {
  return root.lookupType(name);
}

/** Body (no prefix). */
function encodeGo(root: protobuf.Root, typeName: string, value: JsonObject): Uint8Array {
  const type = lookupType(root, typeName);
  const msg = type.fromObject(goShape(type, value, typeName));
  const err = type.verify(msg);
  if (err) throw new Error(`${typeName}: ${err}`);
  return type.encode(msg).finish();
}

/** uvarint(length) ‖ body, via protobufjs's own encodeDelimited. */
function encodeGoDelimited(root: protobuf.Root, typeName: string, value: JsonObject): Uint8Array {
  const type = lookupType(root, typeName);
  const delimited = type.encodeDelimited(type.fromObject(goShape(type, value, typeName))).finish();
  // Cross-check the prefix against a hand-written uvarint.
  const body = encodeGo(root, typeName, value);
  const manual = Buffer.concat([uvarint(body.length), body]);
  if (!Buffer.from(delimited).equals(manual)) throw new Error(`${typeName}: encodeDelimited disagrees with uvarint framing`);
  return delimited;
}

function uvarint(n: number): Buffer {
  const out: number[] = [];
  let v = BigInt(n);
  while (v >= 0x80n) {
    out.push(Number((v & 0x7fn) | 0x80n));
    v >>= 7n;
  }
  out.push(Number(v));
  return Buffer.from(out);
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

// ---------------------------------------------------------------------------
// Canonicalization (types/canonical.go, identical in v0.34.x and v0.37.x)
// ---------------------------------------------------------------------------

// Type aliases, not interfaces, so that they are assignable to `Json`.
type TimestampIn = {
  seconds: string;
  nanos: number;
};
type BlockIdIn = {
  hash: string;
  part_set_header: { total: number; hash: string };
};
/** tmproto.Vote's signed part; `block_id: null` is Go's zero BlockID (a vote for nil). */
interface VoteIn {
  type: number;
  height: string;
  round: number;
  block_id: BlockIdIn | null;
  timestamp: TimestampIn;
}
interface ProposalIn {
  height: string;
  round: number;
  pol_round: number;
  block_id: BlockIdIn | null;
  timestamp: TimestampIn;
}

/** `CanonicalizeBlockID`: nil (field absent) when the BlockID is zero. */
function canonicalBlockId(b: BlockIdIn | null): JsonObject | undefined {
  if (b === null) return undefined;
  if (b.hash === '' && b.part_set_header.total === 0 && b.part_set_header.hash === '') return undefined;
  return { hash: b.hash, part_set_header: { total: b.part_set_header.total, hash: b.part_set_header.hash } };
}

function ts(t: TimestampIn): JsonObject {
  return { seconds: t.seconds, nanos: t.nanos };
}

function canonicalVote(chainId: string, v: VoteIn): JsonObject {
  const o: JsonObject = { type: v.type, height: v.height, round: String(v.round), timestamp: ts(v.timestamp), chain_id: chainId };
  const b = canonicalBlockId(v.block_id);
  if (b) o.block_id = b;
  return o;
}

function canonicalProposal(chainId: string, p: ProposalIn): JsonObject {
  const o: JsonObject = {
    type: 32, // ProposalType, whatever the Proposal says (CanonicalizeProposal)
    height: p.height,
    round: String(p.round),
    pol_round: String(p.pol_round),
    timestamp: ts(p.timestamp),
    chain_id: chainId,
  };
  const b = canonicalBlockId(p.block_id);
  if (b) o.block_id = b;
  return o;
}

/** RFC 3339 with Go's RFC3339Nano trimming, for readers of the JSON only. */
function rfc3339(t: TimestampIn): string {
  const s = BigInt(t.seconds);
  const base = new Date(Number(s) * 1000).toISOString().replace(/\.\d{3}Z$/, '');
  const frac = t.nanos === 0 ? '' : `.${String(t.nanos).padStart(9, '0').replace(/0+$/, '')}`;
  return `${base}${frac}Z`;
}

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

const sha256 = (s: string): string => sha256Hex(Buffer.from(s, 'utf8'));
const EPOCH: TimestampIn = { seconds: '0', nanos: 0 };
const GO_ZERO_TIME: TimestampIn = { seconds: GO_ZERO_TIME_SECONDS, nanos: 0 };
const TWO_62 = 2n ** 62n;

interface VoteCase {
  id: string;
  description: string;
  chain_id: string;
  vote: VoteIn;
  /** Same inputs as a case of the shared v0.38 file; its expected bytes must match. */
  shared_vector_id?: string;
  /** Go's ValidateBasic would refuse the vote, but VoteSignBytes encodes it all the same. */
  note?: string;
}
interface ProposalCase {
  id: string;
  description: string;
  chain_id: string;
  proposal: ProposalIn;
  shared_vector_id?: string;
  note?: string;
}

const BLOCK_A = {
  hash: sha256('blockID_hash'),
  part_set_header: { total: 1000000, hash: sha256('blockID_part_set_header_hash') },
};

const VOTE_CASES: VoteCase[] = [
  {
    id: 'vote-prevote-nil-r0-epoch',
    description: 'prevote for nil, round 0 (omitted), Unix-epoch timestamp (empty Timestamp, still present: 2a 00)',
    chain_id: 'A',
    vote: { type: 1, height: '1', round: 0, block_id: null, timestamp: EPOCH },
    shared_vector_id: 'tendermint-rs-vote-3',
  },
  {
    id: 'vote-precommit-nil-r1-gozero',
    description: "precommit for nil, round 1, Go's zero time.Time (0001-01-01T00:00:00Z), empty chain ID (omitted)",
    chain_id: '',
    vote: { type: 2, height: '1', round: 1, block_id: null, timestamp: GO_ZERO_TIME },
    shared_vector_id: 'cometbft-vote-1',
  },
  {
    id: 'vote-prevote-block-r2-millis',
    description: 'prevote for a block, round 2, timestamp with milliseconds',
    chain_id: 'test_chain_id',
    vote: {
      type: 1,
      height: '12345',
      round: 2,
      block_id: {
        hash: '4445414442454546444541444245454642414642414642414642414642414641',
        part_set_header: { total: 1000000, hash: '3030323234343636383841414343454531313333353537373939424244444646' },
      },
      timestamp: { seconds: '1514170801', nanos: 234000000 },
    },
    shared_vector_id: 'tendermint-rs-vote-1',
  },
  {
    id: 'vote-precommit-block-r0-nanos',
    description: 'precommit for a block, round 0, timestamp with nanoseconds (horcrux documentation example)',
    chain_id: 'juno-1',
    vote: {
      type: 2,
      height: '361402',
      round: 0,
      block_id: {
        hash: '5d4e1f722f53a3fd9e0d28639d7ce7b588338570eba5c340687c30609c47bca4',
        part_set_header: { total: 1, hash: '8283b6e16bea46797f8ad4ee0ace424ac7a4827202446b2d56e7f4438541b7bd' },
      },
      timestamp: { seconds: '1635292772', nanos: 543893580 },
    },
    shared_vector_id: 'horcrux-docs-juno-precommit',
  },
  {
    id: 'vote-precommit-height-2^62-round-max',
    description: 'precommit for a block at height 2^62+12345, round 2^31-1, latest valid timestamp (9999-12-31T23:59:59.999999999Z)',
    chain_id: 'cosmoshub-4',
    vote: {
      type: 2,
      height: (TWO_62 + 12345n).toString(),
      round: 2 ** 31 - 1,
      block_id: BLOCK_A,
      timestamp: { seconds: '253402300799', nanos: 999999999 },
    },
  },
  {
    id: 'vote-prevote-nil-height-2^62-1-pre-epoch',
    description: 'prevote for nil at height 2^62-1, round 3, timestamp before 1970 (seconds -1, nanos 5e8: negative int64 varint)',
    chain_id: 'osmosis-1',
    vote: { type: 1, height: (TWO_62 - 1n).toString(), round: 3, block_id: null, timestamp: { seconds: '-1', nanos: 500000000 } },
  },
  {
    id: 'vote-precommit-empty-hash-nonzero-psh',
    description: 'precommit whose BlockID has an empty hash but a non-zero part-set header: not zero, so written (with an absent hash)',
    chain_id: 'test_chain_id',
    vote: {
      type: 2,
      height: '12345',
      round: 2,
      block_id: { hash: '', part_set_header: { total: 1000000, hash: '3030323234343636383841414343454531313333353537373939424244444646' } },
      timestamp: { seconds: '1514170801', nanos: 234000000 },
    },
    note: 'Vote.ValidateBasic refuses such a BlockID ("either empty or complete"); VoteSignBytes encodes it regardless.',
  },
];

const PROPOSAL_CASES: ProposalCase[] = [
  {
    id: 'proposal-pol-minus1-r23456',
    description: 'pol_round -1 (ten-byte int64 varint), round 23456, timestamp with milliseconds',
    chain_id: 'test_chain_id',
    proposal: {
      height: '12345',
      round: 23456,
      pol_round: -1,
      block_id: {
        hash: 'deadbeefdeadbeefbafbafbafbafbafadeadbeefdeadbeefbafbafbafbafbafa',
        part_set_header: { total: 65535, hash: '0022446688aaccee1133557799bbddff0022446688aaccee1133557799bbddff' },
      },
      timestamp: { seconds: '1518332962', nanos: 765000000 },
    },
    shared_vector_id: 'tendermint-rs-proposal-1',
  },
  {
    id: 'proposal-pol-0-r1-epoch',
    description: 'pol_round 0 (omitted), round 1, Unix-epoch timestamp (2a.. 32 00)',
    chain_id: 'A',
    proposal: { height: '1', round: 1, pol_round: 0, block_id: BLOCK_A, timestamp: EPOCH },
  },
  {
    id: 'proposal-pol-4-r5-height-2^62',
    description: 'pol_round 4, round 5, height 2^62, timestamp with nanoseconds',
    chain_id: 'cosmoshub-4',
    proposal: {
      height: TWO_62.toString(),
      round: 5,
      pol_round: 4,
      block_id: BLOCK_A,
      timestamp: { seconds: '1696413600', nanos: 123456789 },
    },
  },
  {
    id: 'proposal-nil-block-r0-pol-minus1',
    description: 'nil BlockID (field absent), round 0 (omitted), pol_round -1',
    chain_id: 'test_chain_id',
    proposal: { height: '12345', round: 0, pol_round: -1, block_id: null, timestamp: { seconds: '1696413600', nanos: 0 } },
    note: 'Proposal.ValidateBasic requires a complete BlockID; ProposalSignBytes encodes a nil one regardless.',
  },
];

/**
 * Upstream Go test vectors for VoteSignBytes, identical in v0.34.35 and v0.37.18
 * (types/vote_test.go `TestVoteSignBytesTestVectors`, cases 0-4, from line 60). These are
 * bytes Go actually emitted; protobufjs + goShape must reproduce them.
 */
const GO_VOTE_SIGN_BYTES: { id: string; chain_id: string; vote: VoteIn; want: string }[] = [
  { id: 'go-vote_test-0', chain_id: '', vote: { type: 0, height: '0', round: 0, block_id: null, timestamp: GO_ZERO_TIME }, want: '0d2a0b088092b8c398feffffff01' },
  { id: 'go-vote_test-1', chain_id: '', vote: { type: 2, height: '1', round: 1, block_id: null, timestamp: GO_ZERO_TIME }, want: '2108021101000000000000001901000000000000002a0b088092b8c398feffffff01' },
  { id: 'go-vote_test-2', chain_id: '', vote: { type: 1, height: '1', round: 1, block_id: null, timestamp: GO_ZERO_TIME }, want: '2108011101000000000000001901000000000000002a0b088092b8c398feffffff01' },
  { id: 'go-vote_test-3', chain_id: '', vote: { type: 0, height: '1', round: 1, block_id: null, timestamp: GO_ZERO_TIME }, want: '1f1101000000000000001901000000000000002a0b088092b8c398feffffff01' },
  {
    id: 'go-vote_test-4',
    chain_id: 'test_chain_id',
    vote: { type: 0, height: '1', round: 1, block_id: null, timestamp: GO_ZERO_TIME },
    want: '2e1101000000000000001901000000000000002a0b088092b8c398feffffff01320d746573745f636861696e5f6964',
  },
];

interface PrivvalCase {
  id: string;
  description: string;
  /** The `tendermint.privval.Message` as proto JSON (field names as in the .proto, bytes hex, 64-bit ints as strings). */
  message: JsonObject;
  /** Upstream Go's expected `Message.Marshal()` hex, where the case is from privval/msgs_test.go. */
  go_expected_body_hex?: string;
}

/** privval/msgs_test.go (v0.34.35 and v0.37.18, identical): `stamp`, `exampleVote`, `exampleProposal`. */
const MSGS_TEST_STAMP: TimestampIn = { seconds: String(Date.UTC(2019, 9, 13, 16, 14, 44) / 1000), nanos: 0 };
const MSGS_TEST_BLOCK: JsonObject = {
  hash: sha256('blockID_hash'),
  part_set_header: { total: 1000000, hash: sha256('blockID_part_set_header_hash') },
};
const MSGS_TEST_VOTE: JsonObject = {
  type: 1,
  height: '3',
  round: 2,
  block_id: MSGS_TEST_BLOCK,
  timestamp: ts(MSGS_TEST_STAMP),
  validator_address: sha256('validator_address').slice(0, 40), // crypto.AddressHash: SHA-256 truncated to 20 bytes
  validator_index: 56789,
};
const MSGS_TEST_PROPOSAL: JsonObject = {
  type: 1,
  height: '3',
  round: 2,
  pol_round: 2,
  block_id: MSGS_TEST_BLOCK,
  timestamp: ts(MSGS_TEST_STAMP),
  signature: Buffer.from("it's a signature").toString('hex'),
};
/** ed25519.GenPrivKeyFromSecret([]byte("it's a secret")): the seed is SHA-256 of the secret. */
const MSGS_TEST_PUBKEY = hex(ed25519.getPublicKey(Buffer.from(sha256("it's a secret"), 'hex')));
const MSGS_TEST_ERROR: JsonObject = { code: 1, description: "it's a error" };

const PRIVVAL_CASES: PrivvalCase[] = [
  { id: 'go-msgs_test-ping-request', description: 'PingRequest{} (empty message, still written: 3a 00)', message: { ping_request: {} }, go_expected_body_hex: '3a00' },
  { id: 'go-msgs_test-ping-response', description: 'PingResponse{}', message: { ping_response: {} }, go_expected_body_hex: '4200' },
  { id: 'go-msgs_test-pubkey-request', description: 'PubKeyRequest{} (empty chain ID)', message: { pub_key_request: {} }, go_expected_body_hex: '0a00' },
  {
    id: 'go-msgs_test-pubkey-response',
    description: 'PubKeyResponse with the ed25519 key of GenPrivKeyFromSecret("it\'s a secret")',
    message: { pub_key_response: { pub_key: { ed25519: MSGS_TEST_PUBKEY } } },
    go_expected_body_hex: '12240a220a20556a436f1218d30942efe798420f51dc9b6a311b929c578257457d05c5fcf230',
  },
  {
    id: 'go-msgs_test-pubkey-response-error',
    description: 'PubKeyResponse with an error: the non-nullable pub_key is still written, empty (0a 00)',
    message: { pub_key_response: { error: MSGS_TEST_ERROR } },
    go_expected_body_hex: '12140a0012100801120c697427732061206572726f72',
  },
  {
    id: 'go-msgs_test-sign-vote-request',
    description: 'SignVoteRequest{Vote: exampleVote} (no chain ID)',
    message: { sign_vote_request: { vote: MSGS_TEST_VOTE } },
    go_expected_body_hex:
      '1a760a74080110031802224a0a208b01023386c371778ecb6368573e539afc3cc860ec3a2f614e54fe5652f4fc80122608c0843d122072db3d959635dff1bb567bedaa70573392c5159666a3f8caf11e413aac52207a2a0608f49a8ded0532146af1f4111082efb388211bc72c55bcd61e9ac3d538d5bb03',
  },
  {
    id: 'go-msgs_test-signed-vote-response',
    description: 'SignedVoteResponse{Vote: exampleVote}',
    message: { signed_vote_response: { vote: MSGS_TEST_VOTE } },
    go_expected_body_hex:
      '22760a74080110031802224a0a208b01023386c371778ecb6368573e539afc3cc860ec3a2f614e54fe5652f4fc80122608c0843d122072db3d959635dff1bb567bedaa70573392c5159666a3f8caf11e413aac52207a2a0608f49a8ded0532146af1f4111082efb388211bc72c55bcd61e9ac3d538d5bb03',
  },
  {
    id: 'go-msgs_test-signed-vote-response-error',
    description:
      'SignedVoteResponse with an error: the non-nullable vote is still written as a zero Vote (its own non-nullable block_id 22 02 12 00 and zero-time timestamp included)',
    message: { signed_vote_response: { error: MSGS_TEST_ERROR } },
    go_expected_body_hex: '22250a11220212002a0b088092b8c398feffffff0112100801120c697427732061206572726f72',
  },
  {
    id: 'go-msgs_test-sign-proposal-request',
    description: 'SignProposalRequest{Proposal: exampleProposal} (type 1 as in the upstream test, no chain ID)',
    message: { sign_proposal_request: { proposal: MSGS_TEST_PROPOSAL } },
    go_expected_body_hex:
      '2a700a6e08011003180220022a4a0a208b01023386c371778ecb6368573e539afc3cc860ec3a2f614e54fe5652f4fc80122608c0843d122072db3d959635dff1bb567bedaa70573392c5159666a3f8caf11e413aac52207a320608f49a8ded053a10697427732061207369676e6174757265',
  },
  {
    id: 'go-msgs_test-signed-proposal-response',
    description: 'SignedProposalResponse{Proposal: exampleProposal}',
    message: { signed_proposal_response: { proposal: MSGS_TEST_PROPOSAL } },
    go_expected_body_hex:
      '32700a6e08011003180220022a4a0a208b01023386c371778ecb6368573e539afc3cc860ec3a2f614e54fe5652f4fc80122608c0843d122072db3d959635dff1bb567bedaa70573392c5159666a3f8caf11e413aac52207a320608f49a8ded053a10697427732061207369676e6174757265',
  },
  {
    id: 'go-msgs_test-signed-proposal-response-error',
    description: 'SignedProposalResponse with an error: the non-nullable proposal is still written as a zero Proposal',
    message: { signed_proposal_response: { error: MSGS_TEST_ERROR } },
    go_expected_body_hex: '32250a112a021200320b088092b8c398feffffff0112100801120c697427732061206572726f72',
  },
  // Further cases, closer to what a v0.34/v0.37 node sends a signer.
  {
    id: 'pubkey-request-chain',
    description: 'PubKeyRequest with a chain ID, as a node sends it on connect',
    message: { pub_key_request: { chain_id: 'cosmoshub-4' } },
  },
  {
    id: 'pubkey-response-secp256k1',
    description: 'PubKeyResponse with a 33-byte compressed secp256k1 key (PublicKey oneof case 2, v0.34+)',
    message: { pub_key_response: { pub_key: { secp256k1: '0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798' } } },
  },
  {
    id: 'sign-vote-request-precommit-nil',
    description: 'SignVoteRequest for a precommit for nil at height 2^62+7, round 1: zero BlockID still written (22 02 12 00)',
    message: {
      sign_vote_request: {
        vote: {
          type: 2,
          height: (TWO_62 + 7n).toString(),
          round: 1,
          timestamp: { seconds: '1696413600', nanos: 5 },
          validator_address: sha256('validator_address').slice(0, 40),
          validator_index: 0,
        },
        chain_id: 'cosmoshub-4',
      },
    },
  },
  {
    id: 'signed-vote-response-prevote',
    description: 'SignedVoteResponse echoing a signed prevote (64-byte signature), round 0, validator index 0',
    message: {
      signed_vote_response: {
        vote: {
          type: 1,
          height: '361402',
          round: 0,
          block_id: BLOCK_A,
          timestamp: { seconds: '1635292772', nanos: 543893580 },
          validator_address: sha256('validator_address').slice(0, 40),
          validator_index: 0,
          signature: sha256('sig-1') + sha256('sig-2'),
        },
      },
    },
  },
  {
    id: 'sign-proposal-request-pol-minus1',
    description: 'SignProposalRequest with pol_round -1 (int32 -1: ten-byte varint), type 32, chain ID',
    message: {
      sign_proposal_request: {
        proposal: {
          type: 32,
          height: '12345',
          round: 23456,
          pol_round: -1,
          block_id: BLOCK_A,
          timestamp: { seconds: '1518332962', nanos: 765000000 },
        },
        chain_id: 'test_chain_id',
      },
    },
  },
  {
    id: 'signed-proposal-response-error-only',
    description: 'SignedProposalResponse carrying only an error (code 0 omitted); the zero proposal is still written',
    message: { signed_proposal_response: { error: { code: 0, description: 'would double sign' } } },
  },
];

// ---------------------------------------------------------------------------
// Shared v0.38 vectors (cross-check)
// ---------------------------------------------------------------------------

interface SharedCase {
  id: string;
  kind: string;
  chain_id: string;
  type?: number;
  height: number;
  round: number;
  pol_round?: number;
  block_id: BlockIdIn | null;
  timestamp: { seconds: number; nanos: number };
  length_prefixed: boolean;
  expected_hex: string;
}

function sharedCanonical(c: SharedCase): { typeName: string; value: JsonObject } {
  const t: TimestampIn = { seconds: String(c.timestamp.seconds), nanos: c.timestamp.nanos };
  if (c.kind === 'CanonicalVote') {
    return {
      typeName: 'tendermint.types.CanonicalVote',
      value: canonicalVote(c.chain_id, { type: c.type ?? 0, height: String(c.height), round: c.round, block_id: c.block_id, timestamp: t }),
    };
  }
  if (c.kind === 'CanonicalProposal') {
    const v = canonicalProposal(c.chain_id, { height: String(c.height), round: c.round, pol_round: c.pol_round ?? 0, block_id: c.block_id, timestamp: t });
    v.type = c.type ?? 32;
    return { typeName: 'tendermint.types.CanonicalProposal', value: v };
  }
  throw new Error(`shared case ${c.id}: unknown kind ${c.kind}`);
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

function main(): void {
  const args = parseArgs(process.argv.slice(2));
  const loaded = args.trees.map(loadTree);
  const primary = (v: Version): Loaded => loaded.find((l) => l.spec.version === v)!;

  const shared: SharedCase[] | undefined = args.sharedVectors
    ? (JSON.parse(fs.readFileSync(args.sharedVectors, 'utf8')) as { cases: SharedCase[] }).cases
    : undefined;
  const sharedById = new Map((shared ?? []).map((c) => [c.id, c]));

  // 1. Every tree must reproduce Go's own test vectors.
  for (const l of loaded) {
    for (const g of GO_VOTE_SIGN_BYTES) {
      const got = hex(encodeGoDelimited(l.root, 'tendermint.types.CanonicalVote', canonicalVote(g.chain_id, g.vote)));
      if (got !== g.want) throw new Error(`${l.spec.repo}@${l.spec.tag} ${g.id}: got ${got}, Go wants ${g.want}`);
    }
    for (const p of PRIVVAL_CASES) {
      if (!p.go_expected_body_hex) continue;
      const got = hex(encodeGo(l.root, 'tendermint.privval.Message', p.message));
      if (got !== p.go_expected_body_hex) throw new Error(`${l.spec.repo}@${l.spec.tag} ${p.id}: got ${got}, Go wants ${p.go_expected_body_hex}`);
    }
  }

  // 2. Derive per version; every further tree of a version must give the same bytes.
  const versions: Record<string, unknown> = {};
  const mismatches: string[] = [];
  for (const version of VERSIONS) {
    const trees = loaded.filter((l) => l.spec.version === version);
    const all = (typeName: string, value: JsonObject, delimited: boolean): string => {
      const outs = trees.map((l) => hex(delimited ? encodeGoDelimited(l.root, typeName, value) : encodeGo(l.root, typeName, value)));
      if (new Set(outs).size !== 1) throw new Error(`${version} ${typeName}: trees disagree: ${outs.join(' / ')}`);
      return outs[0]!;
    };
    const sharedMatch = (id: string | undefined, got: string): { shared_vector_id: string; shared_vector_matched: boolean } | undefined => {
      if (!id) return undefined;
      const s = sharedById.get(id);
      if (!s) return undefined;
      if (!s.length_prefixed) throw new Error(`shared case ${id} is not length-prefixed`);
      const want = s.expected_hex;
      const matched = want === got;
      if (!matched) mismatches.push(`${version} ${id}: legacy ${got} vs shared ${want}`);
      return { shared_vector_id: id, shared_vector_matched: matched };
    };

    const voteCases = [
      ...VOTE_CASES.map((c) => ({ ...c, upstream_go_test: undefined as string | undefined })),
      ...GO_VOTE_SIGN_BYTES.map((g) => ({
        id: g.id,
        description: `types/vote_test.go TestVoteSignBytesTestVectors case ${g.id.slice(-1)} (bytes emitted by Go)`,
        chain_id: g.chain_id,
        vote: g.vote,
        shared_vector_id: `cometbft-vote-${g.id.slice(-1)}`,
        note: undefined as string | undefined,
        upstream_go_test: 'types/vote_test.go#L60 TestVoteSignBytesTestVectors',
      })),
    ].map((c) => {
      const canonical = canonicalVote(c.chain_id, c.vote);
      const signBytes = all('tendermint.types.CanonicalVote', canonical, true);
      return {
        id: c.id,
        description: c.description,
        ...(c.note ? { note: c.note } : {}),
        ...(c.upstream_go_test ? { upstream_go_test: c.upstream_go_test } : {}),
        inputs: { chain_id: c.chain_id, vote: { ...c.vote, timestamp: { ...c.vote.timestamp, rfc3339: rfc3339(c.vote.timestamp) } } },
        canonical_vote: canonical,
        sign_bytes_hex: signBytes,
        ...sharedMatch(c.shared_vector_id, signBytes),
      };
    });

    const proposalCases = PROPOSAL_CASES.map((c) => {
      const canonical = canonicalProposal(c.chain_id, c.proposal);
      const signBytes = all('tendermint.types.CanonicalProposal', canonical, true);
      return {
        id: c.id,
        description: c.description,
        ...(c.note ? { note: c.note } : {}),
        inputs: { chain_id: c.chain_id, proposal: { ...c.proposal, timestamp: { ...c.proposal.timestamp, rfc3339: rfc3339(c.proposal.timestamp) } } },
        canonical_proposal: canonical,
        sign_bytes_hex: signBytes,
        ...sharedMatch(c.shared_vector_id, signBytes),
      };
    });

    const privvalCases = PRIVVAL_CASES.map((c) => {
      const body = all('tendermint.privval.Message', c.message, false);
      const framed = all('tendermint.privval.Message', c.message, true);
      return {
        id: c.id,
        description: c.description,
        ...(c.go_expected_body_hex ? { upstream_go_test: 'privval/msgs_test.go#L82-L92 TestPrivvalVectors', go_expected_body_hex: c.go_expected_body_hex } : {}),
        message: c.message,
        body_hex: body,
        framed_hex: framed,
      };
    });

    // Every shared v0.38 sign-bytes vector, re-encoded with this version's definitions.
    const sharedCrossCheck = (shared ?? []).map((s) => {
      const { typeName, value } = sharedCanonical(s);
      const got = all(typeName, value, s.length_prefixed);
      const matched = got === s.expected_hex;
      if (!matched) mismatches.push(`${version} shared ${s.id}: legacy ${got} vs shared ${s.expected_hex}`);
      return { id: s.id, kind: s.kind, matched };
    });

    const p = primary(version);
    versions[version] = {
      source: {
        repo: p.spec.repo,
        tag: p.spec.tag,
        commit: p.spec.commit,
        proto_files: p.files,
        also_checked_identical: trees.slice(1).map((t) => ({ repo: t.spec.repo, tag: t.spec.tag, commit: t.spec.commit, proto_files: t.files })),
      },
      vote_cases: voteCases,
      proposal_cases: proposalCases,
      privval_cases: privvalCases,
      shared_v038_cross_check: shared ? { file: args.sharedVectors && path.relative(REPO_ROOT, args.sharedVectors), all_matched: sharedCrossCheck.every((x) => x.matched), cases: sharedCrossCheck } : null,
    };
  }

  const casesOf = (v: Version): string => {
    const x = versions[v] as { vote_cases: unknown; proposal_cases: unknown; privval_cases: unknown };
    return JSON.stringify([x.vote_cases, x.proposal_cases, x.privval_cases]);
  };
  const doc = {
    description: [
      'CometBFT/Tendermint v0.34 and v0.37 test vectors, derived from the upstream .proto files of those releases with protobufjs (not our encoder).',
      'sign_bytes_hex is exactly what a validator signs: uvarint(length) ‖ CanonicalVote/CanonicalProposal, as types/vote.go VoteSignBytes and types/proposal.go ProposalSignBytes build it through types/canonical.go and protoio.MarshalDelimited.',
      'privval body_hex is one tendermint.privval.Message (gogo Message.Marshal); framed_hex is uvarint(length) ‖ body as libs/protoio DelimitedWriter puts it on the wire (privval/signer_endpoint.go).',
      "Inputs: bytes as lowercase hex, 64-bit integers as decimal strings, timestamps as google.protobuf.Timestamp {seconds, nanos} (rfc3339 for readers only); vote.block_id null is Go's zero BlockID (a vote for nil). privval messages are proto JSON with the .proto field names; absent fields are Go zero values.",
      'Go behaviour followed where protobufjs differs: protobufjs writes every field present in the object (also proto3 zeros) and omits absent message fields; gogoproto omits zero scalars, empty bytes and empty strings (so round 0, pol_round 0, type 0, height 0 and an empty chain ID are absent even though height/round are sfixed64), keeps a set oneof member even if empty, and always writes (gogoproto.nullable)=false message fields even when empty: the Timestamp of CanonicalVote/CanonicalProposal (an Unix-epoch time is 2a 00 / 32 00), CanonicalBlockID.part_set_header, Vote/Proposal.block_id and its part_set_header (22 02 12 00 for a vote for nil), PubKeyResponse.pub_key (0a 00 on error), and SignedVoteResponse.vote / SignedProposalResponse.proposal (a zero Vote/Proposal with Go\'s zero time 0001-01-01T00:00:00Z on error). CanonicalVote/CanonicalProposal.block_id is a nullable pointer: CanonicalizeBlockID leaves it out for a zero BlockID (empty hash and zero part-set header) and writes it otherwise, also with an empty hash. The script applies these rules by reading the (gogoproto.nullable)/(gogoproto.stdtime) options from the loaded .proto files, and first reproduces the upstream Go test vectors (types/vote_test.go TestVoteSignBytesTestVectors, privval/msgs_test.go TestPrivvalVectors, byte-identical in v0.34.35 and v0.37.18) — it stops if any byte differs.',
      'The canonical messages, Vote, Proposal, PublicKey and the privval Message are identical in v0.34.35 and v0.37.18 (the .proto files differ only in go_package), so both versions carry the same bytes; v0.34 was also derived from tendermint/tendermint v0.34.24 (identical output). Vote extensions do not exist in these versions: Vote has no fields 9/10 and there is no CanonicalVoteExtension.',
      `Cross-check with the shared v0.38 vectors (upstream_sign_bytes.json): every shared case re-encoded with the v0.34/v0.37 definitions ${mismatches.length === 0 ? 'matched byte for byte' : 'did NOT all match: ' + mismatches.join('; ')}; cases with shared_vector_id use the same inputs as that shared case and carry shared_vector_matched.`,
      "proto_files lists every file protobufjs loaded, with its origin and SHA-256: the upstream tree's proto/ directory, the include directory that supplied gogoproto/gogo.proto (it only declares the gogoproto options and never changes the wire format), or protobufjs itself (google/protobuf/timestamp.proto bundled, descriptor.proto shipped).",
      "cases with custos-unencodable inputs (go-vote_test-0/3/4: type 0 or height 0, which a node never signs) are kept for provenance; our encoder refuses them by design.",
    ],
    provenance: {
      generator: SCRIPT_PATH,
      generated_at: args.date,
      protobufjs_version: PROTOBUFJS_VERSION,
      node_version: process.version,
      upstream: Object.fromEntries(
        VERSIONS.map((v) => {
          const p = primary(v);
          return [v, { repo: p.spec.repo, tag: p.spec.tag, commit: p.spec.commit, entry_files: ENTRY_FILES.map((f) => `proto/${f}`) }];
        }),
      ),
      also_checked: loaded
        .filter((l) => primary(l.spec.version) !== l)
        .map((l) => ({ version: l.spec.version, repo: l.spec.repo, tag: l.spec.tag, commit: l.spec.commit })),
      go_sources_consulted: [
        'types/canonical.go (CanonicalizeVote, CanonicalizeProposal, CanonicalizeBlockID)',
        'types/vote.go (VoteSignBytes), types/proposal.go (ProposalSignBytes): protoio.MarshalDelimited',
        'proto/tendermint/types/canonical.pb.go (generated Marshal: zero omission, non-nullable Timestamp always written)',
        'privval/signer_endpoint.go (protoio.NewDelimitedWriter/Reader framing)',
        'types/vote_test.go#L60 TestVoteSignBytesTestVectors and privval/msgs_test.go#L82-L92 TestPrivvalVectors (expected bytes reproduced)',
      ],
      v034_cases_equal_v037_cases: casesOf('v0.34') === casesOf('v0.37'),
      shared_v038_vectors_all_matched: shared ? mismatches.length === 0 : null,
    },
    versions,
  };

  fs.mkdirSync(path.dirname(args.out), { recursive: true });
  fs.writeFileSync(args.out, `${JSON.stringify(doc, null, 1)}\n`);
  const counts = VERSIONS.map((v) => {
    const x = versions[v] as { vote_cases: unknown[]; proposal_cases: unknown[]; privval_cases: unknown[] };
    return `${v}: ${x.vote_cases.length} votes, ${x.proposal_cases.length} proposals, ${x.privval_cases.length} privval`;
  });
  console.log(`wrote ${path.relative(process.cwd(), args.out)} (${counts.join('; ')}); shared v0.38 mismatches: ${mismatches.length}`);
  for (const m of mismatches) console.log(`  MISMATCH ${m}`);
}

main();

/**
 * The privval connector against a node-side harness on real sockets: the test plays the
 * CometBFT node (listening on priv_validator_laddr, SecretConnection over TCP or plain unix
 * socket), the connector dials it and signs with keys from a real vault.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createPublicKey, generateKeyPairSync, randomBytes, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import { makeVault, tempDir, type TestVault } from '../../helpers/tmpvault.js';
import { PrivvalConnector } from '../../../src/frontends/privval/connector.js';
import { SecretConnection } from '../../../src/frontends/privval/secret-connection.js';
import { CustosError } from '../../../src/core/errors.js';
import { nodeIdOf } from '../../../src/crypto/cometbft/node-id.js';
import { RawTestNode } from '../../helpers/cometbft-node.js';
import {
  MessageReader,
  decodeMessage,
  encodeMessage,
  frameMessage,
  type PrivvalDialect,
  type PrivvalMessage,
  type Proposal,
  type Vote,
} from '../../../src/frontends/privval/messages.js';
import { proposalSignBytes, voteExtensionSignBytes, voteSignBytes, type BlockId, type Timestamp } from '../../../src/frontends/privval/sign-bytes.js';

const CHAIN = 'test-chain-1';

interface Link {
  read(): Promise<Uint8Array | null>;
  write(b: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

function plain(socket: net.Socket): Link {
  const it = socket[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  return {
    read: async () => {
      try {
        const r = await it.next();
        return r.done ? null : new Uint8Array(r.value);
      } catch {
        return null;
      }
    },
    write: (b) => new Promise((res, rej) => socket.write(b, (e) => (e ? rej(e) : res()))),
    close: async () => {
      socket.destroy();
    },
  };
}

/** One accepted connection, seen from the node. */
class NodeConn {
  private reader = new MessageReader();
  private queue: Uint8Array[] = [];
  constructor(
    readonly link: Link,
    private readonly dialect: PrivvalDialect,
  ) {}

  async send(m: PrivvalMessage): Promise<PrivvalMessage> {
    await this.link.write(frameMessage(encodeMessage(m, this.dialect)));
    return this.receive();
  }

  async sendRaw(bytes: Uint8Array): Promise<void> {
    await this.link.write(bytes);
  }

  async receive(): Promise<PrivvalMessage> {
    while (this.queue.length === 0) {
      const chunk = await this.link.read();
      if (chunk === null) throw new Error('the signer closed the connection');
      this.queue.push(...this.reader.push(chunk));
    }
    return decodeMessage(this.queue.shift()!, this.dialect);
  }

  /** Resolves true once the signer has closed the connection. */
  async closedBySigner(): Promise<boolean> {
    return (await this.link.read()) === null;
  }
}

/** The node: listens, accepts the connector's connections (SecretConnection over TCP). */
class FakeNode {
  private accepted: NodeConn[] = [];
  private waiters: Array<(c: NodeConn) => void> = [];
  private sockets = new Set<net.Socket>();
  readonly identity = generateKeyPairSync('ed25519');
  readonly identityPublic = new Uint8Array(this.identity.publicKey.export({ format: 'der', type: 'spki' }).subarray(12));
  remoteKeys: Uint8Array[] = [];

  private constructor(
    readonly server: net.Server,
    readonly kind: 'tcp' | 'unix',
    readonly dialect: PrivvalDialect,
  ) {
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => this.sockets.delete(socket));
      void this.onSocket(socket);
    });
  }

  static async listen(kind: 'tcp' | 'unix', dialect: PrivvalDialect, path?: string, port = 0): Promise<FakeNode> {
    const server = net.createServer();
    await new Promise<void>((res) => (kind === 'tcp' ? server.listen(port, '127.0.0.1', res) : server.listen(path!, res)));
    return new FakeNode(server, kind, dialect);
  }

  address(path?: string): string {
    return this.kind === 'tcp' ? `tcp://127.0.0.1:${(this.server.address() as AddressInfo).port}` : `unix://${path}`;
  }

  private async onSocket(socket: net.Socket): Promise<void> {
    let link: Link;
    if (this.kind === 'tcp') {
      try {
        const sc = await SecretConnection.handshake(socket, { publicKey: this.identityPublic, sign: (m) => new Uint8Array(nodeSign(null, m, this.identity.privateKey)) }, { timeoutMs: 5000 });
        this.remoteKeys.push(sc.remotePublicKey);
        link = { read: () => sc.read(), write: (b) => sc.write(b), close: () => sc.close() };
      } catch {
        socket.destroy();
        return;
      }
    } else link = plain(socket);
    const conn = new NodeConn(link, this.dialect);
    const w = this.waiters.shift();
    if (w) w(conn);
    else this.accepted.push(conn);
  }

  accept(timeoutMs = 5000): Promise<NodeConn> {
    const c = this.accepted.shift();
    if (c) return Promise.resolve(c);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no connection from the signer')), timeoutMs);
      this.waiters.push((conn) => {
        clearTimeout(timer);
        resolve(conn);
      });
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((res) => this.server.close(() => res()));
  }
}

// ---------------------------------------------------------------------------------------------

const TS: Timestamp = { seconds: 1_700_000_000n, nanos: 123_456_789 };

function blockId(seed: number): BlockId {
  return { hash: new Uint8Array(32).fill(seed), partSetHeader: { total: 1, hash: new Uint8Array(32).fill(seed + 1) } };
}
const NIL: BlockId = { hash: new Uint8Array(0), partSetHeader: { total: 0, hash: new Uint8Array(0) } };

function vote(type: 1 | 2, height: number, round: number, bid: BlockId, opts: { ts?: Timestamp; extension?: Uint8Array } = {}): Vote {
  return {
    type,
    height: BigInt(height),
    round,
    blockId: bid,
    timestamp: opts.ts ?? TS,
    validatorAddress: new Uint8Array(20).fill(7),
    validatorIndex: 3,
    signature: new Uint8Array(0),
    extension: opts.extension ?? new Uint8Array(0),
    extensionSignature: new Uint8Array(0),
  };
}

function proposal(height: number, round: number, bid: BlockId): Proposal {
  return { type: 32, height: BigInt(height), round, polRound: -1, blockId: bid, timestamp: TS, signature: new Uint8Array(0) };
}

function verifies(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), pub]);
  return nodeVerify(null, msg, createPublicKey({ key: spki, format: 'der', type: 'spki' }), sig);
}

const isNil = (b: BlockId) => b.hash.length === 0;
const voteBytes = (v: Vote, ts = v.timestamp) =>
  voteSignBytes(CHAIN, { type: v.type === 1 ? 'prevote' : 'precommit', height: v.height, round: v.round, blockId: isNil(v.blockId) ? null : v.blockId, timestamp: ts });

async function signVote(conn: NodeConn, v: Vote, opts: { chainId?: string; skip?: boolean } = {}) {
  const r = await conn.send({ kind: 'sign_vote_request', vote: v, chainId: opts.chainId ?? CHAIN, skipExtensionSigning: opts.skip ?? false });
  assert.equal(r.kind, 'signed_vote_response');
  return r as Extract<PrivvalMessage, { kind: 'signed_vote_response' }>;
}

async function keys(v: TestVault) {
  const consensus = await v.vault.createKey(v.ctx(), { label: 'consensus', algorithm: 'ed25519', exportable: false, purpose: 'consensus' });
  const identity = await v.vault.createKey(v.ctx(), { label: 'privval-identity', algorithm: 'ed25519', exportable: false });
  return { consensus, identity };
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('tcp (SecretConnection, v0.38): pubkey, votes, proposal, double-sign refusal, reconnect', async () => {
  const v = await makeVault();
  const node = await FakeNode.listen('tcp', 'v0.38');
  const { consensus, identity } = await keys(v);
  const logs: string[] = [];
  const connector = new PrivvalConnector(
    v.vault,
    { name: 'val1', chainId: CHAIN, address: node.address(), consensusKey: 'consensus', identityKey: 'privval-identity', dialect: 'v0.38', expectedNodeKey: node.identityPublic },
    { info: (m) => logs.push(`info ${m}`), warn: (m) => logs.push(`warn ${m}`) },
  );
  try {
    assert.equal(connector.status().state, 'stopped');
    connector.start();
    let conn = await node.accept();
    assert.deepEqual(node.remoteKeys[0], identity.publicKey, 'the connector authenticates with the vault identity key');

    // PubKeyRequest
    const pk = await conn.send({ kind: 'pub_key_request', chainId: CHAIN });
    assert.equal(pk.kind, 'pub_key_response');
    assert.ok(pk.kind === 'pub_key_response');
    assert.equal(pk.error, undefined);
    assert.equal(pk.pubKey?.type, 'ed25519');
    assert.deepEqual(pk.pubKey?.bytes, consensus.publicKey);
    await waitFor(() => connector.status().state === 'connected');
    assert.ok(connector.status().connectedSince);

    // Votes across heights and rounds.
    const seq: Vote[] = [
      vote(1, 1, 0, blockId(1)),
      vote(2, 1, 0, blockId(1), { extension: new TextEncoder().encode('ext-1') }),
      vote(1, 2, 0, blockId(2)),
      vote(1, 2, 1, NIL),
      vote(2, 2, 1, NIL),
      vote(2, 2, 2, blockId(3)),
    ];
    for (const req of seq) {
      const r = await signVote(conn, req);
      assert.equal(r.error, undefined, `h${req.height} r${req.round} t${req.type}`);
      assert.ok(r.vote);
      assert.ok(verifies(consensus.publicKey, voteBytes(req), r.vote.signature), 'the vote signature verifies over voteSignBytes');
      assert.deepEqual(r.vote.timestamp, req.timestamp);
      assert.equal(r.vote.extension.length, 0, 'the extension is not echoed');
      if (req.type === 2 && !isNil(req.blockId)) {
        const extBytes = voteExtensionSignBytes(CHAIN, { height: req.height, round: req.round, extension: req.extension });
        assert.ok(verifies(consensus.publicKey, extBytes, r.vote.extensionSignature), 'the extension signature verifies');
      } else assert.equal(r.vote.extensionSignature.length, 0, 'no extension signature on prevotes or nil precommits');
    }
    assert.deepEqual(connector.status().lastSigned, { height: '2', round: 2, step: 3 });

    // Proposal.
    const prop = proposal(3, 0, blockId(4));
    const pr = await conn.send({ kind: 'sign_proposal_request', proposal: prop, chainId: CHAIN });
    assert.ok(pr.kind === 'signed_proposal_response' && pr.proposal && !pr.error);
    const propBytes = proposalSignBytes(CHAIN, { height: prop.height, round: prop.round, polRound: prop.polRound, blockId: prop.blockId, timestamp: prop.timestamp });
    assert.ok(verifies(consensus.publicKey, propBytes, pr.proposal.signature), 'the proposal signature verifies');

    // Prevote at 3/0, then identical re-request, timestamp-only change, conflict.
    const pv = vote(1, 3, 0, blockId(4));
    const first = await signVote(conn, pv);
    assert.ok(first.vote && !first.error);
    const again = await signVote(conn, pv);
    assert.ok(again.vote && !again.error);
    assert.deepEqual(again.vote.signature, first.vote.signature, 'an identical re-request gets the identical signature');
    const later = await signVote(conn, vote(1, 3, 0, blockId(4), { ts: { seconds: TS.seconds + 5n, nanos: 0 } }));
    assert.ok(later.vote && !later.error);
    assert.deepEqual(later.vote.signature, first.vote.signature, 'a timestamp-only change re-serves the stored signature');
    assert.deepEqual(later.vote.timestamp, TS, '... with the stored timestamp');
    assert.ok(verifies(consensus.publicKey, voteBytes(pv, later.vote.timestamp), later.vote.signature));

    const refusalsBefore = connector.status().refusals;
    const conflict = await signVote(conn, vote(1, 3, 0, blockId(9)));
    assert.equal(conflict.vote, undefined);
    assert.equal(conflict.error?.code, 2, 'a conflicting prevote is a double-sign refusal');
    assert.match(conflict.error?.description ?? '', /conflicting/);
    const regression = await signVote(conn, vote(1, 2, 0, blockId(7)));
    assert.equal(regression.error?.code, 2, 'a regression is a double-sign refusal');
    assert.equal(connector.status().refusals, refusalsBefore + 2);

    // The connection is still usable.
    assert.deepEqual(await conn.send({ kind: 'ping_request' }), { kind: 'ping_response' });
    const next = await signVote(conn, vote(1, 3, 1, blockId(5)));
    assert.ok(next.vote && !next.error);

    // Wrong chain ID.
    const wrong = await signVote(conn, vote(1, 4, 0, blockId(6)), { chainId: 'other-chain' });
    assert.equal(wrong.error?.code, 1);
    assert.match(wrong.error?.description ?? '', /chain id/i);
    const wrongProp = await conn.send({ kind: 'sign_proposal_request', proposal: proposal(4, 0, blockId(6)), chainId: 'other-chain' });
    assert.ok(wrongProp.kind === 'signed_proposal_response' && wrongProp.error?.code === 1 && !wrongProp.proposal);
    const wrongPk = await conn.send({ kind: 'pub_key_request', chainId: 'other-chain' });
    assert.ok(wrongPk.kind === 'pub_key_response' && wrongPk.error?.code === 1);

    // The node drops the connection: the connector comes back and answers.
    await conn.link.close();
    conn = await node.accept();
    const pk2 = await conn.send({ kind: 'pub_key_request', chainId: CHAIN });
    assert.ok(pk2.kind === 'pub_key_response' && !pk2.error);
    assert.deepEqual(pk2.pubKey?.bytes, consensus.publicKey);
    const afterReconnect = await signVote(conn, vote(2, 3, 1, blockId(5), { extension: new Uint8Array(0) }));
    assert.ok(afterReconnect.vote && !afterReconnect.error);
    assert.equal(afterReconnect.vote.extensionSignature.length, 64, 'an empty extension is still signed (v0.38)');

    // A re-sent request after reconnecting (RetrySignerClient) gets the same signature.
    const resent = await signVote(conn, vote(2, 3, 1, blockId(5), { extension: new Uint8Array(0) }));
    assert.deepEqual(resent.vote?.signature, afterReconnect.vote.signature);

    // A malformed frame drops the connection; the connector reconnects.
    await conn.sendRaw(new Uint8Array([0x03, 0xff, 0xff, 0xff]));
    assert.equal(await conn.closedBySigner(), true);
    conn = await node.accept();
    assert.deepEqual(await conn.send({ kind: 'ping_request' }), { kind: 'ping_response' });

    const st = connector.status();
    assert.equal(st.state, 'connected');
    assert.ok(st.signatures >= 12);
    assert.ok(logs.some((l) => l.startsWith('warn privval refused')));
  } finally {
    await connector.stop();
    assert.equal(connector.status().state, 'stopped');
    await node.close();
    await v.dispose();
  }
});

test('unix socket (plain, v1): skip_extension_signing, SignBytesRequest refused, reconnect', async () => {
  const v = await makeVault();
  const { dir, cleanup } = tempDir('custos-privval-');
  const path = join(dir, 'pv.sock');
  const node = await FakeNode.listen('unix', 'v1', path);
  const { consensus } = await keys(v);
  const connector = new PrivvalConnector(v.vault, { name: 'val-unix', chainId: CHAIN, address: node.address(path), consensusKey: consensus.id, identityKey: 'privval-identity', dialect: 'v1' });
  try {
    connector.start();
    let conn = await node.accept();
    const pk = await conn.send({ kind: 'pub_key_request', chainId: CHAIN });
    assert.ok(pk.kind === 'pub_key_response' && !pk.error);
    assert.equal(pk.pubKey?.type, 'ed25519');
    assert.deepEqual(pk.pubKey?.bytes, consensus.publicKey);

    const prevote = await signVote(conn, vote(1, 10, 0, blockId(1)), { skip: true });
    assert.ok(prevote.vote && !prevote.error);
    assert.ok(verifies(consensus.publicKey, voteBytes(vote(1, 10, 0, blockId(1))), prevote.vote.signature));

    const skipped = await signVote(conn, vote(2, 10, 0, blockId(1), { extension: new Uint8Array([1, 2, 3]) }), { skip: true });
    assert.ok(skipped.vote && !skipped.error);
    assert.equal(skipped.vote.extensionSignature.length, 0, 'skip_extension_signing is honoured');

    const ext = vote(2, 11, 0, blockId(2), { extension: new Uint8Array([4, 5]) });
    const signed = await signVote(conn, ext, { skip: false });
    assert.ok(signed.vote && !signed.error);
    assert.ok(verifies(consensus.publicKey, voteBytes(ext), signed.vote.signature));
    assert.ok(verifies(consensus.publicKey, voteExtensionSignBytes(CHAIN, { height: 11n, round: 0, extension: ext.extension }), signed.vote.extensionSignature));

    const sb = await conn.send({ kind: 'sign_bytes_request', value: randomBytes(32) });
    assert.ok(sb.kind === 'sign_bytes_response');
    assert.equal(sb.signature.length, 0);
    assert.equal(sb.error?.code, 1, 'SignBytesRequest is refused by default');

    await conn.link.close();
    conn = await node.accept();
    const again = await signVote(conn, ext, { skip: false });
    assert.deepEqual(again.vote?.signature, signed.vote.signature);
    assert.deepEqual(connector.status().lastSigned, { height: '11', round: 0, step: 3 });
  } finally {
    await connector.stop();
    await node.close();
    await v.dispose();
    cleanup();
  }
});

test('a node that is not listening yet is dialled until it appears; a wrong node key is refused', async () => {
  const v = await makeVault();
  await keys(v);
  // Reserve a port, then free it: the connector dials a closed port first.
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const connector = new PrivvalConnector(v.vault, { name: 'late', chainId: CHAIN, address: `tcp://127.0.0.1:${port}`, consensusKey: 'consensus', identityKey: 'privval-identity', dialect: 'v0.38' });
  const warnings: string[] = [];
  let node: FakeNode | undefined;
  let other: FakeNode | undefined;
  let pinned: PrivvalConnector | undefined;
  try {
    connector.start();
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(connector.status().state, 'connecting');
    node = await FakeNode.listen('tcp', 'v0.38', undefined, port);
    // The backoff tops out at 2 s, so a late node is found well within this bound even on a
    // loaded machine; the bound only keeps a broken reconnect loop from hanging the test.
    const conn = await node.accept(8000);
    assert.deepEqual(await conn.send({ kind: 'ping_request' }), { kind: 'ping_response' });

    // A node whose identity key is not the pinned one is never served; it is redialled (and
    // refused) again and again, but reported once per minute.
    other = await FakeNode.listen('tcp', 'v0.38');
    const refused: string[] = [];
    pinned = new PrivvalConnector(
      v.vault,
      { name: 'pinned', chainId: CHAIN, address: other.address(), consensusKey: 'consensus', identityKey: 'privval-identity', dialect: 'v0.38', expectedNodeKey: new Uint8Array(32).fill(1) },
      { info: () => {}, warn: (m) => warnings.push(m) },
      { privvalSigned: () => {}, privvalRefused: () => {}, privvalConnection: () => {}, privvalConnectionRefused: (_, reason) => refused.push(reason) },
    );
    pinned.start();
    await waitFor(() => refused.length >= 2);
    assert.deepEqual([...new Set(refused)], ['node_id_mismatch']);
    assert.deepEqual(warnings, ['privval node id mismatch: refusing the node']);
    assert.equal(pinned.status().state, 'connecting');
  } finally {
    await connector.stop();
    await pinned?.stop();
    await node?.close();
    await other?.close();
    await v.dispose();
  }
  assert.equal(connector.status().state, 'stopped');
});

test('stop() does not wait for a node that accepted but never completes the handshake', async () => {
  const v = await makeVault();
  await keys(v);
  const sockets: net.Socket[] = [];
  const mute = net.createServer((s) => {
    s.on('error', () => {});
    sockets.push(s);
  });
  await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
  const connector = new PrivvalConnector(v.vault, { name: 'mute', chainId: CHAIN, address: `tcp://127.0.0.1:${(mute.address() as AddressInfo).port}`, consensusKey: 'consensus', identityKey: 'privval-identity', dialect: 'v0.38' });
  try {
    connector.start();
    await waitFor(() => sockets.length > 0);
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    await connector.stop();
    // The handshake timeout is 5 s: stop() must not wait it out (generous bound for loaded CI machines).
    assert.ok(Date.now() - t0 < 4500, `stop() took ${Date.now() - t0} ms`);
    assert.equal(connector.status().state, 'stopped');
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => mute.close(() => r()));
    await v.dispose();
  }
});

test('the address is validated', async () => {
  const v = await makeVault();
  try {
    for (const address of ['http://127.0.0.1:1', 'tcp://127.0.0.1', 'tcp://:80', 'unix://', 'noise://x@h:1']) {
      assert.throws(() => new PrivvalConnector(v.vault, { name: 'x', chainId: CHAIN, address, consensusKey: 'c', identityKey: 'i', dialect: 'v0.38' }), /privval address/, address);
    }
  } finally {
    await v.dispose();
  }
});

test('a node pinned by id is dropped right after the handshake: a request it sent along is never read, and the refusal is audited', async () => {
  const v = await makeVault();
  const { consensus } = await keys(v);
  const node = await RawTestNode.listen();
  const fields: Array<Record<string, unknown>> = [];
  const pinnedId = 'ab'.repeat(20);
  const connector = new PrivvalConnector(
    v.vault,
    { name: 'pinned', chainId: CHAIN, address: node.address.replace('tcp://', `tcp://${pinnedId}@`), consensusKey: 'consensus', identityKey: 'privval-identity', dialect: 'v0.38' },
    { info: () => {}, warn: (m, f) => fields.push({ m, ...f }) },
  );
  try {
    connector.start();
    const raw = await node.accept();
    const session = await raw.handshake(node.signer);
    assert.ok(session, 'the handshake completes: the signer must see the key before it can judge it');
    // The request arrives with (or right after) the handshake, as a node's first PubKeyRequest does.
    await session.sendMessage({ kind: 'sign_vote_request', vote: vote(1, 1, 0, blockId(1)), chainId: CHAIN, skipExtensionSigning: false }, 'v0.38');
    assert.equal(await session.receive('v0.38', 10_000), null, 'the signer closes without answering');
    session.close();
    assert.equal(await v.vault.getWatermark(v.ctx(), 'consensus', CHAIN), null, 'nothing was signed');
    await waitFor(() => fields.length > 0);
    const seen = nodeIdOf(node.identityPublic);
    assert.deepEqual(fields[0], { m: 'privval node id mismatch: refusing the node', connector: 'pinned', address: node.address.replace('tcp://', `tcp://${pinnedId}@`), expected_node_id: pinnedId, seen_node_id: seen, chain_id: CHAIN });
    // The log line comes first; the audit entry is durable a commit later.
    let entries: Awaited<ReturnType<typeof v.vault.auditTail>> = [];
    for (let i = 0; i < 500 && entries.length === 0; i++) {
      entries = (await v.vault.auditTail(20)).filter((e) => e.operation === 'privval_connect');
      if (entries.length === 0) await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(entries.length, 1);
    assert.equal(entries[0]!.outcome, 'denied');
    assert.equal(entries[0]!.reason, 'node_id_mismatch');
    assert.equal(entries[0]!.keyId, consensus.id);
    assert.equal(entries[0]!.principal, 'privval:pinned');
    assert.deepEqual(entries[0]!.details, { expected_node_id: pinnedId, seen_node_id: seen, chain_id: CHAIN, connector: 'pinned' });
  } finally {
    await connector.stop();
    await node.close();
    await v.dispose();
  }
});

test('node pins that disagree, or a pin on a unix:// socket, are refused when the connector is made', async () => {
  const v = await makeVault();
  try {
    const key = new Uint8Array(32).fill(9);
    const base = { name: 'x', chainId: CHAIN, consensusKey: 'c', identityKey: 'i', dialect: 'v0.38' as const };
    for (const cfg of [
      { ...base, address: `tcp://${'a'.repeat(40)}@127.0.0.1:1`, expectedNodeId: 'b'.repeat(40) },
      { ...base, address: `tcp://${'a'.repeat(40)}@127.0.0.1:1`, expectedNodeKey: key },
      { ...base, address: 'tcp://127.0.0.1:1', expectedNodeId: 'a'.repeat(40), expectedNodeKey: key },
      { ...base, address: 'unix:///tmp/x.sock', expectedNodeId: 'a'.repeat(40) },
      { ...base, address: 'unix:///tmp/x.sock', expectedNodeKey: key },
      { ...base, address: `unix://${'a'.repeat(40)}@/tmp/x.sock` },
      { ...base, address: 'tcp://127.0.0.1:1', expectedNodeId: 'a'.repeat(39) },
    ]) {
      assert.throws(() => new PrivvalConnector(v.vault, cfg), (e: unknown) => e instanceof CustosError && e.code === 'config_invalid', JSON.stringify({ ...cfg, expectedNodeKey: undefined }));
    }
    // Agreeing pins are fine, in any case.
    new PrivvalConnector(v.vault, { ...base, address: `tcp://${nodeIdOf(key).toUpperCase()}@127.0.0.1:1`, expectedNodeId: nodeIdOf(key), expectedNodeKey: key });
  } finally {
    await v.dispose();
  }
});

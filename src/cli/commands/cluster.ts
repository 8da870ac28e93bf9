/**
 * `custos cluster`: Custos servers as cosigners of threshold keys (FROST, RFC 9591).
 *
 *   init / add-peer / identity   form it: this node's [cluster] section, each peer's entry,
 *                                and the entry to give the others (edits custos.toml; restart)
 *   status                       which peers answer, over mutual TLS both ways
 *   expect                       this node's operator agrees to a key set a peer proposes
 *   keygen                       distributed key generation: no member ever holds the key
 *   split                        a dealer's one-time split of an existing key (a
 *                                priv_validator_key.json, as Horcrux does); the key is not stored
 *   refresh                      new shares for the same key, or a lost member replaced
 */
import type { Command } from 'commander';
import { X509Certificate } from 'node:crypto';
import { join, resolve } from 'node:path';
import { closeSync, fstatSync, fsyncSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { CustosError } from '../../core/errors.js';
import { wipe } from '../../core/bytes.js';
import { clientFrom, out, readInput, withApi } from '../common.js';
import { formatTable } from '../table.js';

const NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/;

function membersOption(v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  const names = v.split(',').map((s) => s.trim()).filter(Boolean);
  for (const n of names) if (!NAME.test(n)) throw new CustosError('bad_request', `--members: "${n}" is not a cosigner name.`);
  return names;
}

function thresholdOption(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 2 || n > 16) throw new CustosError('bad_request', '--threshold must be a whole number from 2 to 16.');
  return n;
}

/** Overwrites a file with zeros, fsyncs it and deletes it (a copy-on-write or journalling file system may keep old blocks: destroy backups too). */
function destroyFile(path: string): void {
  const fd = openSync(path, 'r+');
  try {
    const size = fstatSync(fd).size;
    writeSync(fd, new Uint8Array(size), 0, size, 0);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  unlinkSync(path);
}

const configOf = (dataDir: string) => join(resolve(dataDir), 'custos.toml');

export function registerCluster(program: Command): void {
  const cluster = program.command('cluster').description('Threshold keys across Custos servers: form the cluster, make keys by DKG or split one, see who answers');

  cluster
    .command('init')
    .description("Make this node a cosigner: add [cluster] to DATA_DIR/custos.toml (needs [api] TLS with client_ca; restart to take it)")
    .requiredOption('--data-dir <dir>', 'the vault directory')
    .requiredOption('--name <name>', "this node's name among its cosigners (lowercase letters, digits, _ -)")
    .requiredOption('--client-cert <file>', 'the client certificate this node presents to its peers (custos tls client makes one)')
    .requiredOption('--client-key <file>', 'its key (0600)')
    .option('--ca <file>', "the CA of the peers' server certificates (default: [api] client_ca)")
    .action(async (o: { dataDir: string; name: string; clientCert: string; clientKey: string; ca?: string }) => {
      if (!NAME.test(o.name)) throw new CustosError('bad_request', '--name is 1–32 lowercase letters, digits, _ or -.');
      const { addClusterSection } = await import('../../migrate/config-file.js');
      addClusterSection(configOf(o.dataDir), { name: o.name, clientCert: resolve(o.clientCert), clientKey: resolve(o.clientKey), ...(o.ca ? { ca: resolve(o.ca) } : {}) });
      out(`[cluster] added to ${configOf(o.dataDir)} as "${o.name}". Add each peer with custos cluster add-peer, give the peers the entry \`custos cluster identity\` prints, then restart custos serve.`);
    });

  cluster
    .command('add-peer')
    .description('Add a cosigner this node talks to ([[cluster.peer]] in DATA_DIR/custos.toml; restart to take it)')
    .requiredOption('--data-dir <dir>', 'the vault directory')
    .requiredOption('--name <name>', "the peer's name (as its own [cluster] name says)")
    .requiredOption('--url <url>', 'its API, https://HOST:PORT')
    .option('--certificate <file>', 'its client certificate (PEM)')
    .option('--certificate-sha256 <hex>', "or its SHA-256, as `custos cluster identity` prints it on the peer")
    .action(async (o: { dataDir: string; name: string; url: string; certificate?: string; certificateSha256?: string }) => {
      if ((o.certificate === undefined) === (o.certificateSha256 === undefined)) throw new CustosError('bad_request', 'Give exactly one of --certificate and --certificate-sha256.');
      const sha = o.certificate ? new X509Certificate(readInput(o.certificate)).fingerprint256 : o.certificateSha256!;
      const { addClusterPeer } = await import('../../migrate/config-file.js');
      const cfg = addClusterPeer(configOf(o.dataDir), { name: o.name, url: o.url, certificateSha256: sha.replace(/:/g, '').toLowerCase() });
      out(`Peer ${o.name} (${o.url}) added; ${cfg.cluster!.name} now knows ${cfg.cluster!.peers.map((p) => p.name).join(', ')}. Restart custos serve to take it.`);
    });

  cluster
    .command('identity')
    .description("Print this node's [[cluster.peer]] entry, for the other cosigners' custos.toml")
    .requiredOption('--data-dir <dir>', 'the vault directory')
    .option('--url <url>', 'the address the peers reach this node at (default: from [api])')
    .action(async (o: { dataDir: string; url?: string }) => {
      const { loadConfig } = await import('../../daemon/config.js');
      const { clusterIdentity } = await import('../../daemon/cluster.js');
      const cfg = loadConfig(configOf(o.dataDir), true);
      if (!cfg.cluster) throw new CustosError('config_invalid', `${configOf(o.dataDir)} has no [cluster] section: run custos cluster init first.`);
      const id = clusterIdentity(resolve(o.dataDir), cfg.cluster);
      const url = o.url ?? `https://${cfg.api.host === '0.0.0.0' || cfg.api.host === '::' ? 'THIS-HOST' : cfg.api.host}:${cfg.api.port}`;
      out(['[[cluster.peer]]', `name = ${JSON.stringify(id.name)}`, `url = ${JSON.stringify(url)}`, `certificate_sha256 = ${JSON.stringify(id.certificateSha256)}`].join('\n'));
    });

  withApi(cluster.command('status').description('This node, its peers, and whether each answers over mutual TLS')).action(async (o) => {
    const s = await clientFrom(o).clusterStatus();
    if (o.json) return out(JSON.stringify(s, null, 2));
    out(`This node: ${s.name}`);
    if (s.peers.length === 0) return out('No [[cluster.peer]] is configured.');
    out(formatTable(['PEER', 'URL', 'ANSWERS', 'MS', 'PROBLEM'], s.peers.map((p) => [p.name, p.url, p.reachable ? 'yes' : 'NO', p.ms === undefined ? '' : String(p.ms), p.problem ?? ''])));
    if (s.peers.some((p) => !p.reachable)) process.exitCode = 5;
  });

  withApi(
    cluster
      .command('expect')
      .description("Agree, on this node, to a key set a peer will propose: a peer cannot make this node hold a share, or change who holds one, without it")
      .option('--keygen', 'a distributed key generation (custos cluster keygen on the coordinator)')
      .option('--split', "a dealer's split (custos cluster split on the coordinator)")
      .option('--reshare', 'a refresh that replaces a member (custos cluster refresh --replace on the coordinator)')
      .requiredOption('--label <label>', 'the key')
      .requiredOption('--threshold <t>', 'shares needed to sign')
      .requiredOption('--members <names>', 'comma-separated member names, this node included')
      .requiredOption('--coordinator <name>', 'the peer that runs the command')
      .option('--purpose <purpose>', 'general or consensus', 'general')
      .option('--algorithm <alg>', 'ed25519 or secp256k1-bip340 (any, if not given)')
      .option('--minutes <n>', 'how long the agreement stands', '15'),
  ).action(async (o) => {
    const kinds = (['keygen', 'split', 'reshare'] as const).filter((k) => o[k]);
    if (kinds.length !== 1) throw new CustosError('bad_request', 'Give exactly one of --keygen, --split and --reshare.');
    const r = await clientFrom(o).clusterExpect({ label: o.label, kind: kinds[0]!, purpose: o.purpose, threshold: thresholdOption(o.threshold), members: membersOption(o.members)!, coordinator: o.coordinator, ...(o.algorithm ? { algorithm: o.algorithm } : {}), minutes: Number(o.minutes) });
    out(o.json ? JSON.stringify(r) : `Agreed until ${String(r.expires)}: ${o.coordinator} may ${kinds[0]} ${o.label} (${o.purpose}, ${o.threshold}-of-${membersOption(o.members)!.length}) with this node.`);
  });

  withApi(
    cluster
      .command('keygen')
      .description('Make a threshold key by distributed key generation: every member ends with a share, none with the key')
      .requiredOption('--label <label>', 'the key, by the same label on every member')
      .requiredOption('--threshold <t>', 'shares needed to sign (t of n)')
      .option('--algorithm <alg>', 'ed25519 (CometBFT, SSH, general) or secp256k1-bip340 (Taproot)', 'ed25519')
      .option('--members <names>', "comma-separated member names (default: this node and every peer)")
      .option('--purpose <purpose>', 'general or consensus'),
  ).action(async (o) => {
    const r = await clientFrom(o).clusterKeygen({ label: o.label, algorithm: o.algorithm, threshold: thresholdOption(o.threshold), ...(membersOption(o.members) ? { members: membersOption(o.members)! } : {}), ...(o.purpose ? { purpose: o.purpose } : {}) });
    out(o.json ? JSON.stringify(r) : `${r.label}: ${r.threshold}-of-${r.members.length} across ${r.members.join(', ')}; public key ${r.public_key}`);
  });

  withApi(
    cluster
      .command('refresh')
      .description('Proactive refresh: every member gets a new share of the same key, old shares become useless; --replace swaps a lost member for a new one')
      .requiredOption('--label <label>', 'the threshold key')
      .option('--replace <old=new>', 'the member lost, and the node (a configured peer) that takes its place')
      .option('--resume', 'finish a refresh in progress on every member (any member may run it); refused where one did not finish it')
      .option('--abort', 'abort a refresh in progress on every member: retired shares come back once every holder has the abort decision'),
  ).action(async (o) => {
    if ([o.replace !== undefined, o.resume, o.abort].filter(Boolean).length > 1) throw new CustosError('bad_request', 'Give at most one of --replace, --resume and --abort.');
    if (o.resume || o.abort) {
      const c = clientFrom(o);
      const r = o.resume ? await c.clusterRefreshResume(o.label) : await c.clusterRefreshAbort(o.label);
      return out(o.json ? JSON.stringify(r) : `${o.label}: refresh ${String(o.resume ? r.resumed : r.aborted)} ${o.resume ? 'applied' : 'aborted'} on ${(r.members as string[]).join(', ')}.`);
    }
    let replace: { old: string; new: string } | undefined;
    if (o.replace !== undefined) {
      const m = /^([a-z0-9][a-z0-9_-]{0,31})=([a-z0-9][a-z0-9_-]{0,31})$/.exec(o.replace);
      if (!m) throw new CustosError('bad_request', '--replace is OLD=NEW, two cosigner names.');
      replace = { old: m[1]!, new: m[2]! };
    }
    const r = await clientFrom(o).clusterRefresh(o.label, replace);
    out(o.json ? JSON.stringify(r) : `${r.label}: new shares on ${r.members.join(', ')} (${r.threshold}-of-${r.members.length}); public key unchanged ${r.public_key}. Old shares no longer sign.`);
  });

  withApi(
    cluster
      .command('split')
      .description("Split an existing key once into one share per member (a dealer, as Horcrux does); the whole key is not stored anywhere; destroy the file afterwards")
      .requiredOption('--label <label>', 'the threshold key, by the same label on every member')
      .requiredOption('--threshold <t>', 'shares needed to sign (t of n)')
      .requiredOption('--in <file>', 'the key (a priv_validator_key.json with --format cometbft)')
      .option('--format <f>', 'raw, hex, pkcs8, openssh or cometbft', 'cometbft')
      .option('--algorithm <alg>', 'for raw and hex input: ed25519 or secp256k1-bip340')
      .option('--members <names>', 'comma-separated member names (default: this node and every peer)')
      .option('--purpose <purpose>', 'general or consensus (default: consensus for cometbft, else general)')
      .option('--destroy-input', 'once every member holds its share, overwrite the input file with zeros, fsync it and delete it'),
  ).action(async (o) => {
    if (o.destroyInput && o.in === '-') throw new CustosError('bad_request', '--destroy-input needs a file, not standard input.');
    const material = readInput(o.in);
    try {
      const purpose = o.purpose ?? (o.format === 'cometbft' ? 'consensus' : undefined);
      const r = await clientFrom(o).clusterSplit({ label: o.label, format: o.format, material, threshold: thresholdOption(o.threshold), ...(o.algorithm ? { algorithm: o.algorithm } : {}), ...(membersOption(o.members) ? { members: membersOption(o.members)! } : {}), ...(purpose ? { purpose } : {}) });
      if (o.destroyInput) destroyFile(o.in);
      if (o.json) return out(JSON.stringify({ ...r, input_destroyed: o.destroyInput === true }));
      out(`${r.label}: ${r.threshold}-of-${r.members.length} across ${r.members.join(', ')}; public key ${r.public_key} (the key split).`);
      out(o.destroyInput ? `${o.in} was overwritten and deleted: destroy every other copy of it (backups) too.` : `The whole key is in ${o.in} only now: destroy it (shred -u ${o.in}, or --destroy-input) once the shares are confirmed, and every backup of it.`);
    } finally {
      wipe(material);
    }
  });
}

/** CometBFT watermarks, over the HTTP API: `privval import-state`, `privval status`. */
import type { Command } from 'commander';
import { CustosError } from '../../core/errors.js';
import { clientFrom, out, readInput, withApi } from '../common.js';
import { formatTable } from '../table.js';
import { registerPrivvalSetup } from './privval-setup.js';
import { parseValidatorState } from '../../migrate/cometbft-state.js';

export function registerPrivval(program: Command): void {
  const privval = program.command('privval').description('CometBFT remote signing: consensus keys and their double-sign watermarks');
  registerPrivvalSetup(privval);
  withApi(
    privval
      .command('import-state')
      .description("Seed a key's double-sign watermark from a priv_validator_state.json of CometBFT (FilePV), Horcrux or tmkms (never moves it backwards)")
      .requiredOption('--key <key>', 'consensus key id or label (import priv_validator_key.json with `keys import --format cometbft`)')
      .requiredOption('--chain-id <id>', 'chain id')
      .requiredOption('--in <file>', 'priv_validator_state.json'),
  ).action(async (o) => {
    const { origin, state: body } = parseValidatorState(readInput(o.in), o.in);
    if (origin === 'tmkms' && !o.json) out(`${o.in} is a tmkms state file: its steps 0/1/2 are read as 1/2/3 (proposal, prevote, precommit).`);
    const r = await clientFrom(o).importWatermark(o.key, o.chainId, body);
    out(o.json ? JSON.stringify(r) : `Watermark of ${o.key} on ${o.chainId}: height ${r.height} round ${r.round} step ${r.step}.`);
  });
  withApi(
    privval
      .command('status')
      .description("Each validator's connection state and last signed height/round/step; or, with --key and --chain-id, a key's watermark")
      .option('--key <key>', 'consensus key')
      .option('--chain-id <id>', 'chain id'),
  ).action(async (o) => {
    const c = clientFrom(o);
    if (o.key || o.chainId) {
      if (!o.key || !o.chainId) throw new CustosError('bad_request', 'Give both --key and --chain-id, or neither.');
      const w = await c.getWatermark(o.key, o.chainId);
      return out(o.json ? JSON.stringify(w) : `${o.key} on ${o.chainId}: last signed height ${w.height} round ${w.round} step ${w.step}${w.signature ? '' : ' (no signature stored)'}`);
    }
    const list = await c.privvalStatus();
    if (o.json) return out(JSON.stringify(list, null, 2));
    if (list.length === 0) return out('No [[privval]] validator is configured.');
    out(formatTable(
      ['NAME', 'CHAIN', 'VERSION', 'STATE', 'ADDRESS', 'LAST SIGNED H/R/S', 'SIGNED', 'REFUSED'],
      list.map((p) => [p.name, p.chain_id, p.dialect, p.state, p.address, p.last_signed ? `${p.last_signed.height}/${p.last_signed.round}/${p.last_signed.step}` : 'nothing yet', String(p.signatures), String(p.refusals)]),
    ));
    for (const p of list) if (p.hint) out(`\n${p.name}: ${p.hint}`);
  });

}

/** The rule types a policy document may use, by their `type` (which is also their stable tag). */
import type { RuleTag } from '../model.js';
import { amountLimitRule } from './amount-limit.js';
import { approvalRule } from './approval.js';
import { changeMustReturnRule } from './change.js';
import type { RuleType } from './common.js';
import { destinationsRule } from './destinations.js';
import { feeCapRule } from './fee-cap.js';
import { operationsRule } from './operations.js';
import { pathsRule } from './paths.js';
import { payloadFormatRule } from './payload-format.js';
import { principalsRule } from './principals.js';
import { rateLimitRule } from './rate-limit.js';
import { timeWindowRule } from './time-window.js';
import { torPeriodsRule } from './tor-periods.js';
import { velocityRule } from './velocity.js';

export const RULE_TYPES: Readonly<Record<RuleTag, RuleType<unknown>>> = {
  operations: operationsRule as RuleType<unknown>,
  principals: principalsRule as RuleType<unknown>,
  time_window: timeWindowRule as RuleType<unknown>,
  rate_limit: rateLimitRule as RuleType<unknown>,
  amount_limit: amountLimitRule as RuleType<unknown>,
  velocity: velocityRule as RuleType<unknown>,
  destinations: destinationsRule as RuleType<unknown>,
  fee_cap: feeCapRule as RuleType<unknown>,
  change_must_return: changeMustReturnRule as RuleType<unknown>,
  payload_format: payloadFormatRule as RuleType<unknown>,
  approval: approvalRule as RuleType<unknown>,
  paths: pathsRule as RuleType<unknown>,
  tor_periods: torPeriodsRule as RuleType<unknown>,
};

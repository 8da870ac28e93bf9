/**
 * `time_window`: signing only on some days of the week and between two times of day, in UTC or
 * an IANA time zone (through Intl, so daylight saving follows the platform's tz database).
 * `from` is inclusive, `to` exclusive; `to` earlier than `from` spans midnight, and the day
 * checked is the local day at the moment of the request. Tag `time_window`.
 */
import { printable } from '../../core/text.js';
import { invalid } from '../fields.js';
import { ALL_KINDS, type RuleType } from './common.js';

export const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;

export interface TimeWindowSpec {
  /** Bit d set when weekday d (0 = Sunday) is allowed. */
  days: number;
  from: number;
  to: number;
  timezone: string;
}

const HHMM = /^([01][0-9]|2[0-3]):([0-5][0-9])$|^24:00$/;

function minutes(s: string): number {
  return s === '24:00' ? 1440 : Number(s.slice(0, 2)) * 60 + Number(s.slice(3, 5));
}
const hhmm = (m: number) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;

export function checkTimeZone(tz: string, path: string): string {
  if (tz === 'UTC') return tz;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
  } catch {
    throw invalid(path, `unknown IANA time zone "${printable(tz, 60)}"`);
  }
  return tz;
}

export const timeWindowRule: RuleType<TimeWindowSpec> = {
  tag: 'time_window',
  fields: ['days', 'from', 'to', 'timezone'],
  stateful: false,
  parse(f) {
    f.needOne('days', 'from', 'to');
    const days = f.list('days', (s, p) => {
      const d = (DAYS as readonly string[]).indexOf(s);
      if (d < 0) throw invalid(p, `expected a day of the week (${DAYS.join(', ')}), got "${printable(s, 40)}"`);
      return d;
    }, { what: 'days of the week' });
    const from = minutes(f.string('from', { pattern: HHMM, what: 'a time of day "HH:MM" (00:00 to 24:00)' }) ?? '00:00');
    const to = minutes(f.string('to', { pattern: HHMM, what: 'a time of day "HH:MM" (00:00 to 24:00)' }) ?? '24:00');
    if (from === 1440) throw invalid(f.at('from'), 'must be earlier than 24:00');
    if (from === to) throw invalid(f.at('to'), 'equals from, which would leave no time at all (write from = "00:00", to = "24:00" for the whole day)');
    const tz = f.has('timezone') ? checkTimeZone(f.requiredString('timezone'), f.at('timezone')) : 'UTC';
    return { days: days ? days.reduce((m, d) => m | (1 << d), 0) : 0x7f, from, to, timezone: tz };
  },
  compile(spec, site) {
    const dayList = DAYS.filter((_, d) => spec.days & (1 << d)).join(', ');
    const span = `${hhmm(spec.from)}-${hhmm(spec.to)} ${spec.timezone}`;
    return {
      id: site.ruleId,
      tag: 'time_window',
      judges: ALL_KINDS,
      scope: () => null,
      evaluate(_req, ctx) {
        const { day, minute } = ctx.localTime(spec.timezone);
        const at = `${DAYS[day]} ${hhmm(minute)} ${spec.timezone}`;
        if (!(spec.days & (1 << day))) return { result: 'deny', explanation: `${at} is not on an allowed day (${dayList})` };
        const inside = spec.from < spec.to ? minute >= spec.from && minute < spec.to : minute >= spec.from || minute < spec.to;
        if (!inside) return { result: 'deny', explanation: `${at} is outside ${span}` };
        return { result: 'pass', explanation: `${at} is within ${span} on ${dayList}` };
      },
    };
  },
};

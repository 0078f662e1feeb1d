// Names beside ids in the audit lists (auditors and admins only: they may
// read every identity, contract and dataset, so a lookup is never a refused
// request that the log would then record). Actors and identity or
// organization resources are read with GET /identities/{id}, contracts and
// datasets with their own routes; each id is asked for once per signed-in
// user, at most four at a time, and an id that cannot be read (deleted, not
// an id at all: `system`, an altered row) stays an id.
import { useEffect, useState } from 'preact/hooks';
import { api } from './api.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// resource type -> the kind of id it holds; kind -> [route, the field that names it]
const KIND = { identity: 'identity', organization: 'identity', contract: 'contract', dataset: 'dataset' };
const ROUTES = {
  identity: (id) => [`/api/v1/identities/${id}`, 'name'],
  contract: (id) => [`/api/v1/contracts/${id}`, 'title'],
  dataset: (id) => [`/api/v1/datasets/${id}`, 'name'],
};
const LIMIT = 4;

let owner = null; // the identity the cache was filled for
const known = new Map(); // "kind:id" -> name, or null when it cannot be read
const asked = new Set();
const queue = [];
const listeners = new Set();
let running = 0;
let notifying = false;

/** Whether `me` (GET /auth/me) may look names up: auditors and admins. */
export const readsNames = (me) => Boolean(me?.token?.roles?.some((r) => r === 'auditor' || r === 'admin'));

function notify() {
  if (notifying) return;
  notifying = true;
  setTimeout(() => {
    notifying = false;
    for (const fn of listeners) fn();
  }, 50); // one re-render for the names that arrive together
}

function pump() {
  while (running < LIMIT && queue.length) {
    const k = queue.shift();
    const cut = k.indexOf(':');
    const [path, field] = ROUTES[k.slice(0, cut)](k.slice(cut + 1));
    const mine = owner;
    running++;
    api('GET', path)
      .then(
        (r) => mine === owner && known.set(k, typeof r.body?.[field] === 'string' && r.body[field] ? r.body[field] : null),
        (e) => mine === owner && (e?.status ? known.set(k, null) : asked.delete(k)), // unreachable: ask again later
      )
      .finally(() => {
        running--;
        notify();
        pump();
      });
  }
}

/**
 * The names of the actors and resources of `events`, looked up for `me`:
 * returns nameOf(type, id) -> the name, or undefined while unknown or
 * unreadable. Re-renders as names arrive.
 */
export function useNames(events, me) {
  const [, setTick] = useState(0);
  const allowed = readsNames(me);
  const who = me?.identity?.id;
  useEffect(() => {
    if (!allowed) return undefined;
    const fn = () => setTick((n) => n + 1);
    listeners.add(fn);
    return () => listeners.delete(fn);
  }, [allowed]);
  useEffect(() => {
    if (!allowed) return;
    if (owner !== who) {
      owner = who;
      known.clear();
      asked.clear();
      queue.length = 0;
    }
    for (const e of events ?? []) {
      const ks = [];
      if (UUID.test(e.actor ?? '')) ks.push('identity:' + e.actor);
      if (KIND[e.resource_type] && UUID.test(e.resource_id ?? '')) ks.push(`${KIND[e.resource_type]}:${e.resource_id}`);
      for (const k of ks) {
        if (asked.has(k)) continue;
        asked.add(k);
        queue.push(k);
      }
    }
    pump();
  }, [events, allowed, who]);
  return (type, id) => (allowed && owner === who && KIND[type] ? known.get(`${KIND[type]}:${id}`) ?? undefined : undefined);
}

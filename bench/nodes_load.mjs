// Load generator of bench/bench-nodes.sh: C concurrent clients create
// contracts (POST /api/v1/contracts as a provider) against one base URL for
// S seconds; prints "<creations/s> <p99 ms> <errors>". Usage:
//   node bench/nodes_load.mjs URL TOKEN PROVIDER_ID CONSUMER_ID CLIENTS SECONDS
const [url, token, provider, consumer, clients, seconds] = process.argv.slice(2);
const now = Date.now();
const terms = {
  data_access: {datasets: ['s3://provider/records'], permissions: ['train']},
  usage: {purposes: ['research'], allowed_model_types: ['gradient_boosting'], max_training_runs: 10,
          raw_data_export: false},
  retention: {days: 30, deletion: 'crypto_shred'},
  security: {encryption_level: 'high', network_isolation: true, audit_logging: true, custom_policies: []},
  compliance: {frameworks: ['GDPR'], data_residency: ['DE']},
  effective_from: new Date(now - 3600e3).toISOString(),
  expires_at: new Date(now + 365 * 86400e3).toISOString(),
};
const body = JSON.stringify({title: 'bench', description: 'bench', provider_id: provider, consumer_id: consumer,
                             terms});
const end = Date.now() + Number(seconds) * 1000;
const lat = [];
let errors = 0;
async function client() {
  while (Date.now() < end) {
    const t0 = performance.now();
    try {
      const r = await fetch(`${url}/api/v1/contracts`, {
        method: 'POST', body, signal: AbortSignal.timeout(30000),
        headers: {'Content-Type': 'application/json', Authorization: `Bearer ${token}`},
      });
      await r.arrayBuffer();
      if (r.status === 201) lat.push(performance.now() - t0);
      else errors++;
    } catch {
      errors++;
    }
  }
}
const t0 = Date.now();
await Promise.all(Array.from({length: Number(clients)}, client));
const secs = (Date.now() - t0) / 1000;
lat.sort((a, b) => a - b);
const p99 = lat.length ? lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.99))] : 0;
console.log(`${(lat.length / secs).toFixed(1)} ${p99.toFixed(1)} ${errors}`);

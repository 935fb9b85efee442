package hostile

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/loadkit"
	"github.com/oauth-jwt/oauth_jwt/test/results"
)

// mutator makes a hostile token from a valid one.
type mutator struct {
	name string
	fn   func(r *rand.Rand, valid string, pool []string) string
}

const b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func randString(r *rand.Rand, alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

var mutators = []mutator{
	{"bit flip", func(r *rand.Rand, v string, _ []string) string {
		b := []byte(v)
		for n := 1 + r.IntN(3); n > 0; n-- {
			i := r.IntN(len(b))
			b[i] ^= 1 << r.IntN(8)
		}
		return string(b)
	}},
	{"base64 character swap", func(r *rand.Rand, v string, _ []string) string {
		b := []byte(v)
		i := r.IntN(len(b))
		if b[i] == '.' {
			i = (i + 1) % len(b)
		}
		b[i] = b64chars[r.IntN(len(b64chars))]
		return string(b)
	}},
	{"truncation", func(r *rand.Rand, v string, _ []string) string { return v[:r.IntN(len(v))] }},
	{"cut a range", func(r *rand.Rand, v string, _ []string) string {
		i := r.IntN(len(v))
		j := i + 1 + r.IntN(min(64, len(v)-i))
		return v[:i] + v[j:]
	}},
	{"insertion", func(r *rand.Rand, v string, _ []string) string {
		i := r.IntN(len(v) + 1)
		return v[:i] + randString(r, b64chars+".=+/~", 1+r.IntN(16)) + v[i:]
	}},
	{"segment splice", func(r *rand.Rand, v string, pool []string) string {
		a, b := strings.Split(v, "."), strings.Split(pool[r.IntN(len(pool))], ".")
		if len(b) < 3 {
			return v + "." + b[0]
		}
		a[r.IntN(3)] = b[r.IntN(3)]
		return strings.Join(a, ".")
	}},
	{"segment shuffle", func(r *rand.Rand, v string, _ []string) string {
		s := strings.Split(v, ".")
		r.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
		if strings.Join(s, ".") == v {
			s = append(s, s[0])
		}
		return strings.Join(s, ".")
	}},
	{"random base64url JWT shape", func(r *rand.Rand, _ string, _ []string) string {
		return "eyJ" + randString(r, b64chars, 10+r.IntN(60)) + "." + randString(r, b64chars, r.IntN(300)) + "." + randString(r, b64chars, r.IntN(400))
	}},
	{"random bytes", func(r *rand.Rand, _ string, _ []string) string {
		b := make([]byte, r.IntN(200))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	}},
	{"random printable", func(r *rand.Rand, _ string, _ []string) string {
		b := make([]byte, r.IntN(300))
		for i := range b {
			b[i] = byte(0x20 + r.IntN(0x5f))
		}
		return string(b)
	}},
	{"repetition", func(r *rand.Rand, v string, _ []string) string {
		return strings.Repeat(v[:1+r.IntN(len(v))], 2+r.IntN(40))
	}},
	{"header swapped for a hostile one", func(r *rand.Rand, v string, _ []string) string {
		hdrs := []string{`{"alg":"none"}`, `{"alg":"HS256","kid":"rsa1"}`, `{"alg":"RS256","kid":"rsa1","jku":"http://127.0.0.1:9/"}`,
			`{"alg":"RS256","kid":"../../etc/passwd"}`, `{"alg":"RS256","kid":"rsa1","crit":["x"]}`, `{"alg":"RS256","kid":"rsa1","b64":false}`,
			`{"alg":"ES256","kid":"rsa1"}`, `{"alg":"RS256","kid":null}`, `{}`, `[]`, `{"alg":"RS256","kid":"rsa1","zip":"DEF"}`}
		s := strings.Split(v, ".")
		s[0] = b64([]byte(hdrs[r.IntN(len(hdrs))]))
		return strings.Join(s, ".")
	}},
}

// A bounded fuzz loop through real connections: mutated tokens (bit flips,
// truncations, splices, random bytes, hostile headers) from several
// clients at once. None may be accepted; the untouched valid token, sent
// between them, must always be; the server must never crash; every
// mutant must be refused either by oauth_jwt with a reason or by
// PostgreSQL before the validator.
func TestFuzzThroughServer(t *testing.T) {
	dur := loadkit.EnvDuration("OJW_FUZZ_DURATION", 20*time.Second)
	workers := loadkit.EnvInt("OJW_FUZZ_WORKERS", 6)
	seed := uint64(time.Now().UnixNano())
	if s := loadkit.EnvInt("OJW_FUZZ_SEED", 0); s > 0 {
		seed = uint64(s)
	}
	t.Logf("seed %d (OJW_FUZZ_SEED to repeat)", seed)

	ci := startCorpusIssuer(t)
	c := corpusCluster(t, ci)
	kv := corpusBase()
	kv["oauth_jwt.log_accepted"] = "on"
	c.SetConf(kv)
	watch := loadkit.WatchCrashes(t, c)
	valid := std(ci).build(t)
	// Other tokens to splice from: every algorithm the issuer signs with.
	var pool []string
	for _, cc := range corpus() {
		if cc.before == nil && cc.realm == "" {
			pool = append(pool, cc.token(t, ci))
		}
	}
	// Warm the cache, and be sure the valid token is accepted.
	if o := loginOutcome(t, c, "corpus_ident", valid); !o.accepted {
		t.Fatalf("the valid token is refused:\n%s", o.log)
	}
	mark := c.LogMark()

	var mutants, mutantsOK, validSent, validOK atomic.Int64
	var mu sync.Mutex
	used := map[string]int{}
	var accepted []string
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			for n := 0; time.Now().Before(deadline); n++ {
				tok, name := valid, "valid"
				if n%25 != 0 {
					m := mutators[r.IntN(len(mutators))]
					tok, name = m.fn(r, valid, pool), m.name
					// PostgreSQL skips spaces between "Bearer" and the
					// token (auth-oauth.c) before any validator sees it:
					// such a "mutant" is the valid token itself.
					if strings.TrimLeft(tok, " ") == valid {
						continue
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				conn, err := c.ConnectOAuth(ctx, "corpus_ident", tok)
				cancel()
				if err == nil {
					conn.Close(context.Background())
				}
				mu.Lock()
				used[name]++
				if tok == valid {
					validSent.Add(1)
					if err == nil {
						validOK.Add(1)
					}
				} else {
					mutants.Add(1)
					if err == nil {
						mutantsOK.Add(1)
						accepted = append(accepted, describeMutant(name, tok, valid))
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	time.Sleep(300 * time.Millisecond)
	log := c.LogSince(mark)
	res := &results.Fuzz{Seconds: dur.Seconds(), Workers: workers, Seed: seed, Mutants: mutants.Load(), MutantsAccepted: mutantsOK.Load(),
		Valid: validSent.Load(), ValidAccepted: validOK.Load(), Reasons: loadkit.Reasons(log), Mutators: used,
		PostgresMessages: map[string]int{}}
	delete(res.Reasons, "ok") // the valid token's logins
	for _, n := range res.Reasons {
		res.ByValidator += n
	}
	// What PostgreSQL says when it refuses a message before the validator.
	for _, line := range strings.Split(log, "\n") {
		for _, m := range []string{"malformed OAuth bearer token", "malformed OAUTHBEARER message", "invalid message length", "invalid SASL", "unexpected EOF"} {
			if strings.Contains(line, m) {
				res.PostgresMessages[m]++
			}
		}
	}
	res.ByPostgres = int(res.Mutants) - res.ByValidator
	res.Crashes = watch.Check(t)
	t.Logf("%v with %d clients: %d mutants sent, %d accepted; valid token sent %d times, accepted %d; refused by oauth_jwt: %d (%s); refused by PostgreSQL before the validator: %d %v",
		dur, workers, res.Mutants, res.MutantsAccepted, res.Valid, res.ValidAccepted, res.ByValidator, loadkit.ReasonsString(res.Reasons), res.ByPostgres, res.PostgresMessages)
	figuresMu.Lock()
	figures.Fuzz = res
	figuresMu.Unlock()

	if len(accepted) > 0 {
		t.Errorf("%d mutated tokens were ACCEPTED, e.g. %s", len(accepted), accepted[0])
	}
	if res.ValidAccepted != res.Valid || res.Valid == 0 {
		t.Errorf("the valid token was accepted %d times of %d", res.ValidAccepted, res.Valid)
	}
	if got := strings.Count(log, "oauth_jwt: bearer token accepted"); int64(got) != res.ValidAccepted {
		t.Errorf("%d acceptances logged, %d valid logins", got, res.ValidAccepted)
	}
	if bad := loadkit.LinesWith(log, "internal error in OAuth validator module"); len(bad) > 0 {
		t.Errorf("%d internal errors, first: %s", len(bad), bad[0])
	}
	if res.Mutants < 100 {
		t.Errorf("only %d mutants in %v", res.Mutants, dur)
	}
	for _, seg := range strings.Split(valid, ".") {
		if strings.Contains(c.Log(), seg) {
			t.Errorf("a segment of the valid token reached the server log")
		}
	}
}

// describeMutant says what an accepted mutant was without printing it: test
// output follows the same rule as the server log (no token, no fragment).
func describeMutant(name, tok, valid string) string {
	at := 0
	for at < len(tok) && at < len(valid) && tok[at] == valid[at] {
		at++
	}
	return fmt.Sprintf("%s mutation, %d bytes (valid token: %d), first difference at byte %d", name, len(tok), len(valid), at)
}

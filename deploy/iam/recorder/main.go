// Command recorder is the IAM coverage check's witness: a transparent relay in front of
// each AWS endpoint of the local stack that writes down the API operation of every request
// passing through, and the check that compares what was recorded with deploy/iam-policy.json.
//
//	recorder relay -log FILE NAME=http://HOST:PORT ...
//	    Listens on a free loopback port per upstream and prints `NAME=http://127.0.0.1:PORT`
//	    lines (then runs until killed). Bytes go through untouched in both directions; the
//	    client's side is parsed on the side (HTTP/1.1, Content-Length or chunked bodies) to
//	    log one JSON line per request: the IAM action (`kinesis:GetRecords`, from the
//	    X-Amz-Target header of the JSON protocols, the Action parameter of the Query protocol
//	    or the path of rpc-v2-cbor) and whether the user agent says `app/shardline` (the
//	    binary and everything built on its AWS config) or not (the tests' own set-up calls).
//	recorder check -policy deploy/iam-policy.json -outside deploy/iam/outside-policy.txt -log FILE
//	    Fails (exit 1) when Shardline sent an operation that is neither in the policy nor
//	    listed as outside it, and lists the policy's actions that no request used.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: recorder relay|check ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "relay":
		relay(os.Args[2:])
	case "check":
		os.Exit(check(os.Args[2:]))
	default:
		fmt.Fprintln(os.Stderr, "usage: recorder relay|check ...")
		os.Exit(2)
	}
}

// entry is one recorded request.
type entry struct {
	Upstream  string `json:"upstream"`
	Action    string `json:"action"`
	Shardline bool   `json:"shardline"`
}

type logger struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (l *logger) write(e entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.enc.Encode(e)
}

func relay(args []string) {
	fs := flag.NewFlagSet("relay", flag.ExitOnError)
	logPath := fs.String("log", "", "file the requests are appended to (JSON lines)")
	_ = fs.Parse(args)
	if *logPath == "" || fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: recorder relay -log FILE NAME=http://HOST:PORT ...")
		os.Exit(2)
	}
	f, err := os.OpenFile(*logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	log := &logger{enc: json.NewEncoder(f)}
	for _, spec := range fs.Args() {
		name, upstream, ok := strings.Cut(spec, "=")
		u, err := url.Parse(upstream)
		if !ok || err != nil || u.Scheme != "http" || u.Host == "" {
			fmt.Fprintf(os.Stderr, "recorder: %q is not NAME=http://HOST:PORT\n", spec)
			os.Exit(2)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("%s=http://%s\n", name, l.Addr())
		go serve(l, name, u.Host, log)
	}
	// The caller reads the addresses from our stdout, then leaves us running.
	os.Stdout.Close()
	select {}
}

func serve(l net.Listener, name, upstream string, log *logger) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go pipe(c, name, upstream, log)
	}
}

// pipe relays one connection: the upstream's bytes back as they come, the client's bytes
// forwarded as they are read by the request parser (a tee), so nothing is rewritten.
func pipe(client net.Conn, name, upstream string, log *logger) {
	defer client.Close()
	up, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer up.Close()
	go func() {
		_, _ = io.Copy(client, up)
		client.Close()
	}()
	r := bufio.NewReader(io.TeeReader(client, up))
	for {
		req, err := http.ReadRequest(r)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		log.write(entry{
			Upstream:  name,
			Action:    action(req, body),
			Shardline: strings.Contains(req.Header.Get("User-Agent")+" "+req.Header.Get("X-Amz-User-Agent"), "app/shardline"),
		})
	}
}

// Service prefixes of the JSON protocols' X-Amz-Target, as IAM names the services.
var targets = map[string]string{
	"Kinesis_20131202":                 "kinesis",
	"DynamoDB_20120810":                "dynamodb",
	"DynamoDBStreams_20120810":         "dynamodb",
	"GraniteServiceVersion20100801":    "cloudwatch",
	"AWSSecurityTokenServiceV20110615": "sts",
}

// Query protocol versions, per service.
var queryVersions = map[string]string{
	"2010-08-01": "cloudwatch",
	"2011-06-15": "sts",
}

func action(req *http.Request, body []byte) string {
	if t := req.Header.Get("X-Amz-Target"); t != "" {
		svc, op, _ := strings.Cut(t, ".")
		if s, ok := targets[svc]; ok {
			return s + ":" + op
		}
		return "unknown-target:" + t
	}
	// rpc-v2-cbor: POST /service/<Service>/operation/<Operation>
	if parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/"); len(parts) == 4 &&
		parts[0] == "service" && parts[2] == "operation" {
		svc := strings.ToLower(parts[1])
		if strings.HasPrefix(parts[1], "GraniteService") {
			svc = "cloudwatch"
		}
		return svc + ":" + parts[3]
	}
	// PutMetricData bodies above a size are gzip-compressed by the SDK.
	if strings.Contains(req.Header.Get("Content-Encoding"), "gzip") {
		if zr, err := gzip.NewReader(bytes.NewReader(body)); err == nil {
			if plain, err := io.ReadAll(zr); err == nil {
				body = plain
			}
		}
	}
	if strings.HasPrefix(req.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		if v, err := url.ParseQuery(string(body)); err == nil && v.Get("Action") != "" {
			svc := queryVersions[v.Get("Version")]
			if svc == "" {
				svc = "unknown-query-" + v.Get("Version")
			}
			return svc + ":" + v.Get("Action")
		}
	}
	return "unknown:" + req.Method + " " + req.URL.Path + " " + req.Header.Get("Content-Type") + " " + req.Header.Get("Content-Encoding")
}

// policy is the part of an IAM policy document the check reads.
type policy struct {
	Statement []struct {
		Sid    string          `json:"Sid"`
		Effect string          `json:"Effect"`
		Action json.RawMessage `json:"Action"`
	} `json:"Statement"`
}

func check(args []string) int {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	policyPath := fs.String("policy", "deploy/iam-policy.json", "the IAM policy")
	outsidePath := fs.String("outside", "", "operations Shardline sends that the policy leaves out on purpose (one `service:Operation  why` a line)")
	logPath := fs.String("log", "", "the relay's log")
	_ = fs.Parse(args)

	raw, err := os.ReadFile(*policyPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var p policy
	if err := json.Unmarshal(raw, &p); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", *policyPath, err)
		return 2
	}
	allowed := map[string][]string{} // action → statement ids
	for _, s := range p.Statement {
		if s.Effect != "Allow" {
			continue
		}
		var list []string
		if err := json.Unmarshal(s.Action, &list); err != nil {
			var one string
			if err := json.Unmarshal(s.Action, &one); err != nil {
				fmt.Fprintf(os.Stderr, "%s: statement %s: Action is neither a string nor a list\n", *policyPath, s.Sid)
				return 2
			}
			list = []string{one}
		}
		for _, a := range list {
			if strings.Contains(a, "*") {
				fmt.Fprintf(os.Stderr, "%s: statement %s: wildcard action %q is not least privilege\n", *policyPath, s.Sid, a)
				return 1
			}
			allowed[a] = append(allowed[a], s.Sid)
		}
	}
	outside := map[string]string{}
	if *outsidePath != "" {
		text, err := os.ReadFile(*outsidePath)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		for _, line := range strings.Split(string(text), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			a, why, _ := strings.Cut(line, " ")
			outside[a] = strings.TrimSpace(why)
		}
	}

	f, err := os.Open(*logPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer f.Close()
	shardline := map[string]int{}
	tests := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			continue
		}
		if e.Shardline {
			shardline[e.Action]++
		} else {
			tests[e.Action]++
		}
	}
	total := 0
	for _, n := range shardline {
		total += n
	}
	if total == 0 {
		fmt.Fprintln(os.Stderr, "IAM coverage: no request of Shardline was recorded (did the suite run through the relays?)")
		return 1
	}

	failed := false
	fmt.Printf("IAM coverage: %d requests of Shardline, %d operations\n", total, len(shardline))
	for _, a := range sorted(shardline) {
		switch {
		case len(allowed[a]) > 0:
			fmt.Printf("  ok       %-44s %7d  (%s)\n", a, shardline[a], strings.Join(allowed[a], ", "))
		case outside[a] != "":
			fmt.Printf("  outside  %-44s %7d  (%s)\n", a, shardline[a], outside[a])
		default:
			fmt.Printf("  MISSING  %-44s %7d  not in %s\n", a, shardline[a], *policyPath)
			failed = true
		}
	}
	var unused []string
	for a := range allowed {
		if shardline[a] == 0 {
			unused = append(unused, a)
		}
	}
	sort.Strings(unused)
	fmt.Printf("policy actions no test request used: %d\n", len(unused))
	for _, a := range unused {
		fmt.Printf("  unused   %-44s (%s)\n", a, strings.Join(allowed[a], ", "))
	}
	fmt.Printf("operations only the tests' own clients sent (set-up, not Shardline's): ")
	var only []string
	for _, a := range sorted(tests) {
		if shardline[a] == 0 {
			only = append(only, a)
		}
	}
	fmt.Println(strings.Join(only, " "))
	if failed {
		fmt.Println("IAM coverage: FAILED: Shardline sent operations the policy does not allow")
		return 1
	}
	fmt.Println("IAM coverage: every operation Shardline sent is allowed by the policy")
	return 0
}

func sorted(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

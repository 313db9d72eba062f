// Command imds-sdk-client-go asks a fresh aws-sdk-go-v2 EC2 role credentials provider for
// credentials once and prints one JSON line.
//
// Usage: imds-sdk-client-go [ENDPOINT]   (or IMDS_ENDPOINT), e.g. http://127.0.0.1:1338
//
// The provider is ec2rolecreds.New with an imds.Client whose only non-default option is
// Endpoint, behind aws.NewCredentialsCache, as config.LoadDefaultConfig wraps it (the cache
// adds nothing to a first retrieval). Built offline in GOPATH mode against Debian's
// golang-github-aws-aws-sdk-go-v2-dev (see ../README.md for the versions).
//
// The secret key and the session token never leave this process: only the first four
// characters of the access key id are printed. A hard deadline (IMDS_CLIENT_DEADLINE seconds,
// default 30) turns a provider that never returns into "hung": true.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/smithy-go"
)

func refuseNonLoopback(endpoint string) {
	u, err := url.Parse(endpoint)
	host := ""
	if err == nil {
		host = u.Hostname()
	}
	if err != nil || u.Scheme != "http" || !(strings.HasPrefix(host, "127.") || host == "::1" || host == "localhost") {
		fmt.Fprintf(os.Stderr, "go client: refusing non-loopback IMDS endpoint %q\n", endpoint)
		os.Exit(2)
	}
}

// kind names the innermost typed error worth naming, never a value from the response body.
func kind(err error) string {
	var apiErr *smithy.GenericAPIError
	if errors.As(err, &apiErr) {
		return "GenericAPIError(" + apiErr.Code + ")"
	}
	var canceled *aws.RequestCanceledError
	if errors.As(err, &canceled) {
		return "RequestCanceledError"
	}
	var opErr *smithy.OperationError
	if errors.As(err, &opErr) {
		return "OperationError(" + opErr.OperationName + ")"
	}
	return fmt.Sprintf("%T", err)
}

func main() {
	endpoint := os.Getenv("IMDS_ENDPOINT")
	if len(os.Args) > 1 {
		endpoint = os.Args[1]
	}
	refuseNonLoopback(endpoint)
	deadline := 30.0
	if v, err := strconv.ParseFloat(os.Getenv("IMDS_CLIENT_DEADLINE"), 64); err == nil {
		deadline = v
	}
	for _, v := range []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"} {
		os.Unsetenv(v)
	}

	start := time.Now()
	client := imds.New(imds.Options{Endpoint: endpoint})
	provider := aws.NewCredentialsCache(ec2rolecreds.New(func(o *ec2rolecreds.Options) {
		o.Client = client
	}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(deadline*float64(time.Second)))
	defer cancel()
	creds, err := provider.Retrieve(ctx)
	wait := time.Since(start).Seconds()

	line := map[string]interface{}{
		"sdk":                  "go",
		"available":            false,
		"wait_seconds":         float64(int64(wait*10000)) / 10000,
		"error":                nil,
		"access_key_id_prefix": nil,
		"hung":                 false,
	}
	switch {
	case err == nil:
		line["available"] = true
		prefix := creds.AccessKeyID
		if len(prefix) > 4 {
			prefix = prefix[:4]
		}
		line["access_key_id_prefix"] = prefix
		line["expiry_in_seconds"] = time.Until(creds.Expires).Seconds()
	case ctx.Err() != nil:
		line["hung"] = true
		line["error"] = "deadline"
	default:
		line["error"] = kind(err)
		detail := err.Error()
		if len(detail) > 400 {
			detail = detail[:400]
		}
		line["detail"] = detail
	}
	out, _ := json.Marshal(line)
	fmt.Println(string(out))
}

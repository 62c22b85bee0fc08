package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/incident-engine/engine/infra/notify"
	"github.com/incident-engine/engine/wire"
)

// chromiumPath finds Debian's chromium (installed by .ci/run).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: apt-get install -y chromium (.ci/run does this)")
	return ""
}

// browser starts a headless Chromium for the test and returns its context.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	return ctx
}

// TestDashboardInABrowser loads the dashboard in headless Chromium against a worker fed by the
// producer: the incident appears in the list, its page shows the chart and the timeline,
// acknowledging it from the page changes its status, the services page shows each service's
// state, and screenshots are saved for the README.
func TestDashboardInABrowser(t *testing.T) {
	const token = "dashboard-test-token"
	e := startEngine(t, func(c *wire.Config) { c.API.Token = token })
	e.produce(t, "--failure-mode", "errors", "--start", simStart.Format(time.RFC3339), "--duration", "6h30m",
		"--failure-after", failAfter.String(), "--failure-for", failFor.String())
	e.waitProcessed(t, simStart.Add(6*time.Hour+29*time.Minute), "api", "db", "auth")
	got := e.incidents(t, "api")
	if len(got) != 1 || got[0].Status != "open" {
		t.Fatalf("incidents %+v, want one open incident for api", got)
	}
	base := "http://" + e.worker.HTTP.Addr()
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// The page asks for a name with prompt(): answer "alice".
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true, PromptText: "alice"})
		}
	}()
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return v
	}
	count := func(expr string) int {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[int](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}
	shot := func() []byte {
		t.Helper()
		b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		return b
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("tr.incident-row"))); err != nil {
		t.Fatalf("incident list: %v", err)
	}
	if list := text("#incidents"); !strings.Contains(list, "api") || !strings.Contains(list, "open") {
		t.Fatalf("incident list shows %q, want the open api incident", list)
	}
	listShot := shot()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("tr.incident-row a")), chromedp.WaitVisible(chromedp.CSS("#chart svg polyline"))); err != nil {
		t.Fatalf("incident page: %v", err)
	}
	if timeline := text(".timeline"); !strings.Contains(timeline, "opened") || !strings.Contains(timeline, "driven by") {
		t.Errorf("timeline shows %q, want the opening with the metrics that drove it", timeline)
	}
	if panels, anomalous := count(`document.querySelectorAll('#chart svg').length`), count(`document.querySelectorAll('#chart .anomalous-point').length`); panels < 4 || anomalous == 0 {
		t.Errorf("chart has %d panels and %d anomalous points, want score and metric panels with anomalies marked", panels, anomalous)
	}
	if count(`document.querySelectorAll('#chart line.threshold').length`) != 1 {
		t.Error("the score panel has no threshold line")
	}
	if n := count(`document.querySelectorAll('#chart svg.time-axis text').length`); n != 5 {
		t.Errorf("the chart's time axis has %d labels, want 5", n)
	}
	if n := count(`[...document.querySelectorAll('#chart text')].filter(e => /e[+-]/.test(e.textContent)).length`); n != 0 {
		t.Errorf("%d chart labels in scientific notation", n)
	}
	// Runs of anomalies are folded into one row each, so the changes stand out.
	if runs, rows := count(`document.querySelectorAll('.timeline tr.anomaly-run').length`), count(`document.querySelectorAll('.timeline > tbody > tr').length`); runs == 0 || rows > 12 {
		t.Errorf("timeline: %d folded runs among %d rows, want the anomalies folded", runs, rows)
	}
	if summary := text(".timeline tr.anomaly-run summary"); !strings.Contains(summary, "anomalies") || !strings.Contains(summary, "score") {
		t.Errorf("a folded run says %q, want its count and score range", summary)
	}
	incidentShot := shot()
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS("#token"), token),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#token').dispatchEvent(new Event('change')), null`),
		chromedp.Click(chromedp.CSS("#ack")),
		chromedp.WaitVisible(chromedp.CSS("#acked")),
	); err != nil {
		t.Fatalf("acknowledge from the page: %v", err)
	}
	if status := text("h2"); !strings.Contains(status, "acknowledged by alice") {
		t.Errorf("after acknowledging, the page says %q", status)
	}
	// The token stays with the tab unless the operator asks to remember it.
	stored, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(localStorage.getItem("apiToken") === null ? "none" : "local") + "/" + (sessionStorage.getItem("apiToken") ? "session" : "none")`))
	if err != nil {
		t.Fatal(err)
	}
	if stored != "none/session" {
		t.Errorf("token kept in %s (localStorage/sessionStorage), want the session only", stored)
	}
	// Every response carries the security headers; the page above ran under them.
	for _, path := range []string{"/", "/app.js", "/api/v1/incidents", "/api/v1/nothing"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
			resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: CSP %q, nosniff %q; want both", path, csp, resp.Header.Get("X-Content-Type-Options"))
		}
	}
	var acked string
	if err := e.pool.QueryRow(context.Background(), `SELECT coalesce(acked_by, '') FROM incidents WHERE id = $1`, got[0].ID).Scan(&acked); err != nil || acked != "alice" {
		t.Errorf("incident acked_by = %q (%v), want alice in the database", acked, err)
	}
	// The link every notification carries opens the incident's page.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank"), chromedp.Navigate(notify.IncidentURL(base, got[0].ID)),
		chromedp.WaitVisible(chromedp.CSS("#chart svg polyline"))); err != nil {
		t.Fatalf("the notification link %s: %v", notify.IncidentURL(base, got[0].ID), err)
	}
	if title := text("h2"); !strings.Contains(title, "api") {
		t.Errorf("the notification link shows %q, want the api incident", title)
	}
	// Silence db for the next hour through the API: the services page shows it silenced.
	body := fmt.Sprintf(`{"service":"db","end":%q,"reason":"upgrade","author":"alice"}`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/silences", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		t.Fatalf("create silence: %v %v", resp, err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/#/services"), chromedp.WaitVisible(chromedp.CSS("#services svg.sparkline"))); err != nil {
		t.Fatalf("services page: %v", err)
	}
	if services := text("#services"); !strings.Contains(services, "in incident") || !strings.Contains(services, "healthy") || !strings.Contains(services, "silenced") {
		t.Errorf("services page shows %q, want api in incident, db silenced and auth healthy", services)
	}
	servicesShot := shot()
	// A page from a cursor: the services after it, in name order, and a way back to the first.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/#/services/after/api"), chromedp.WaitVisible(chromedp.CSS(`#main a[href="#/services"]`))); err != nil {
		t.Fatalf("services after api: %v", err)
	}
	if names, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#services tbody tr td:first-child")].map((td) => td.textContent)`)); err != nil || !slices.Equal(names, []string{"auth", "db"}) {
		t.Errorf("services after api: %v (%v), want [auth db]", names, err)
	}
	// Screenshots go to SCREENSHOT_DIR when set (the README's, in docs/, were made with
	// SCREENSHOT_DIR=$PWD/docs), else to a temporary directory.
	shots := os.Getenv("SCREENSHOT_DIR")
	if shots == "" {
		shots = t.TempDir()
	}
	for name, b := range map[string][]byte{"dashboard-incidents.png": listShot, "dashboard-incident.png": incidentShot, "dashboard-services.png": servicesShot} {
		if len(b) == 0 {
			t.Errorf("screenshot %s is empty", name)
		}
		if err := os.WriteFile(filepath.Join(shots, name), b, 0o644); err != nil {
			t.Errorf("save screenshot: %v", err)
		}
	}
}

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/b2ce5911/sse"
	"github.com/b2ce5911/sse/examples/chat/chat"
)

const (
	testTimeout = 2 * time.Minute  // the whole test, browser start included
	stepTimeout = 20 * time.Second // each wait for the pages
	room        = "e2e-room"
	artifacts   = "artifacts"
)

// browser starts headless Chromium, Debian's, with a profile of its own, and
// returns a context for its first tab. It fails when Chromium is missing:
// a browser test that skips proves nothing.
func browser(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (%v): install it with `apt-get update && apt-get install -y chromium`, as `bash scripts/test` does when run as root", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(900, 700),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	first, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	start := time.Now()
	if err := chromedp.Do(first); err != nil { // starts the browser, bound to ctx
		t.Fatalf("start %s: %v", path, err)
	}
	t.Logf("%s started in %v", path, time.Since(start).Round(time.Millisecond))
	return first
}

// page is one browser tab with the chat open.
type page struct {
	t    *testing.T
	name string
	ctx  context.Context
}

// open opens pageURL in a new tab of the browser of ctx.
func open(t *testing.T, ctx context.Context, name, pageURL string) *page {
	t.Helper()
	tab, cancel := chromedp.NewContext(ctx)
	p := &page{t: t, name: name, ctx: tab}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	// The first Run on a tab's context opens the tab and binds it to the
	// context of that call: the tab's own, not one with a step's timeout.
	if err := chromedp.Do(tab, chromedp.EmulateViewport(900, 700)); err != nil {
		t.Fatalf("page %s: new tab: %v", name, err)
	}
	// What the page writes to the console goes to the test log.
	console := chromedp.Console(tab)
	wg.Go(func() {
		for m, err := range console {
			if err != nil {
				return
			}
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				t.Errorf("page %s console %s: %s", name, m.Type, m.Text)
			} else {
				t.Logf("page %s console %s: %s", name, m.Type, m.Text)
			}
		}
	})
	p.do("open "+pageURL, chromedp.Navigate(pageURL))
	return p
}

// do runs actions in the tab, within stepTimeout.
func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("page %s: %s: %v", p.name, what, err)
	}
}

// waitFor waits until the JavaScript expression is true in the page.
func (p *page) waitFor(what, expr string) {
	p.t.Helper()
	p.do(what, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(stepTimeout)))
}

func (p *page) waitState(state string) {
	p.t.Helper()
	p.waitFor("state "+state, fmt.Sprintf(`document.getElementById("state").dataset.state === %s`, jsString(state)))
}

// waitMessage waits until the page shows a message of name with text.
func (p *page) waitMessage(name, text string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("message %q from %s", text, name), fmt.Sprintf(
		`[...document.querySelectorAll("#messages li")].some(li =>
			li.querySelector(".name").textContent === %s && li.querySelector(".text").textContent === %s)`,
		jsString(name), jsString(text)))
}

// state is what the connection state element shows.
func (p *page) state() string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.getElementById("state").textContent`))
	if err != nil {
		p.t.Fatalf("page %s: state: %v", p.name, err)
	}
	return s
}

// shown is a message as the page shows it.
type shown struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Text string `json:"text"`
}

func (p *page) messages() []shown {
	p.t.Helper()
	m, err := chromedp.Run(p.ctx, chromedp.Evaluate[[]shown](`[...document.querySelectorAll("#messages li")].map(li => ({
		id: li.dataset.id,
		name: li.querySelector(".name").textContent,
		text: li.querySelector(".text").textContent,
	}))`))
	if err != nil {
		p.t.Fatalf("page %s: messages: %v", p.name, err)
	}
	return m
}

// exactlyOnce checks that the page shows each text once, and no event id
// twice.
func (p *page) exactlyOnce(texts ...string) {
	p.t.Helper()
	got := p.messages()
	count := make(map[string]int)
	ids := make(map[string]int)
	for _, m := range got {
		count[m.Text]++
		ids[m.ID]++
	}
	for _, text := range texts {
		if count[text] != 1 {
			p.t.Errorf("page %s shows %q %d times, want once; it shows %+v", p.name, text, count[text], got)
		}
	}
	for id, n := range ids {
		if id == "" || n != 1 {
			p.t.Errorf("page %s shows %d messages with id %q; want one, with an id", p.name, n, id)
		}
	}
}

// typeMessage sends a message through the page's form, as a person would.
func (p *page) typeMessage(name, text string) {
	p.t.Helper()
	p.do("type "+text,
		chromedp.SetValue(chromedp.ID("name"), name),
		chromedp.SendKeys(chromedp.ID("text"), text),
		chromedp.Click(chromedp.ID("send-button")),
	)
}

// screenshot saves what the page shows as artifacts/NN-step-page.png.
func (p *page) screenshot(step string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatalf("page %s: screenshot: %v", p.name, err)
	}
	path := filepath.Join(artifacts, step+"-"+p.name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	abs, _ := filepath.Abs(path)
	p.t.Logf("screenshot %s", abs)
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// post sends a message the way a client other than the pages would.
func post(t *testing.T, serverURL, name, text string) {
	t.Helper()
	resp, err := http.PostForm(serverURL+"/send", url.Values{"room": {room}, "name": {name}, "text": {text}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("send %q: %s %s", text, resp.Status, b)
	}
}

// waitSubscribers waits until the Hub in service has n streams open.
func waitSubscribers(t *testing.T, s *chat.Server, n int) {
	t.Helper()
	waitStats(t, s, fmt.Sprintf("%d streams open", n), func(st sse.HubStats) bool { return st.Subscribers == n })
}

// waitStats waits until the counters of the Hub in service satisfy ok.
func waitStats(t *testing.T, s *chat.Server, what string, ok func(sse.HubStats) bool) {
	t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for !ok(s.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("server: waited %v for %s; stats %+v", stepTimeout, what, s.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestChatInBrowsers drives two Chromium tabs in one room through the life
// of a chat: a message typed in one shows in both; the server drops every
// connection while messages are sent, and both pages reconnect and show
// each message once; the server restarts with a new epoch, and the pages
// say that history was lost.
func TestChatInBrowsers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}

	s := chat.New(slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	ts := httptest.NewServer(s) // 127.0.0.1 only
	t.Cleanup(ts.Close)
	t.Cleanup(func() { s.Shutdown(context.Background()) })

	first := browser(t, ctx)
	pageURL := ts.URL + "/#" + room
	a := open(t, first, "a", pageURL)
	b := open(t, first, "b", pageURL)
	pages := []*page{a, b}
	step := func(name string, f func()) {
		t.Helper()
		start := time.Now()
		f()
		t.Logf("step %s: %v", name, time.Since(start).Round(time.Millisecond))
		for _, p := range pages {
			p.screenshot(name)
		}
	}

	step("01-open", func() {
		for _, p := range pages {
			p.waitState("open")
		}
		waitSubscribers(t, s, 2) // a page is open when its headers came, a moment before the Hub counts it
	})

	step("02-message", func() {
		a.typeMessage("alice", "hello from a <b>tab</b>")
		for _, p := range pages {
			p.waitMessage("alice", "hello from a <b>tab</b>")
		}
		b.typeMessage("bob", "hi alice")
		for _, p := range pages {
			p.waitMessage("bob", "hi alice")
			p.exactlyOnce("hello from a <b>tab</b>", "hi alice")
		}
	})

	var sent []string
	step("03-reconnect", func() {
		s.DropConnections()
		for i := 1; i <= 5; i++ {
			text := fmt.Sprintf("while away %d", i)
			post(t, ts.URL, "carol", text)
			sent = append(sent, text)
		}
		t.Logf("after the drop and %d messages: page a %s, page b %s", len(sent), a.state(), b.state())
		waitSubscribers(t, s, 2)
		for _, p := range pages {
			p.waitState("open")
		}
		// Events come in order: once the last message shows, a duplicate
		// of an earlier one would have shown too.
		post(t, ts.URL, "carol", "back again")
		for _, p := range pages {
			p.waitMessage("carol", "back again")
			p.exactlyOnce(append(sent, "hello from a <b>tab</b>", "hi alice", "back again")...)
		}
	})

	step("04-reset", func() {
		s.Restart()
		for _, p := range pages {
			p.do("reset notice", chromedp.WaitVisible(chromedp.ID("notice")))
			p.waitState("open")
		}
	})

	step("05-rejoin", func() {
		before := s.Stats().Subscriptions
		b.do("rejoin", chromedp.Click(chromedp.ID("rejoin")), chromedp.WaitNotVisible(chromedp.ID("notice")))
		b.waitState("open")
		// The old stream of b may still be counted as open a moment, so
		// wait for the new one to be subscribed.
		waitStats(t, s, "page b subscribed again", func(st sse.HubStats) bool { return st.Subscriptions > before })
		if n := len(b.messages()); n != 0 {
			t.Errorf("page b shows %d messages after rejoining, want none", n)
		}
		b.typeMessage("bob", "after the restart")
		for _, p := range pages {
			p.waitMessage("bob", "after the restart")
			p.exactlyOnce("after the restart")
		}
	})
}

// testWriter sends the server's log to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

package redistest

import "testing"

func TestStartRestartPause(t *testing.T) {
	s := Start(t)
	if err := ping(s.Addr()); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	s.Pause()
	if err := ping(s.Addr()); err == nil {
		t.Fatal("a paused server answered")
	}
	s.Resume()
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("after resume: %v", err)
	}
	s.Kill()
	if err := ping(s.Addr()); err == nil {
		t.Fatal("a killed server answered")
	}
}

package app

import (
	"context"

	"github.com/eventserver/eventserver/internal/hub"
	"github.com/eventserver/eventserver/internal/v6api"
	"github.com/eventserver/eventserver/internal/validate"
)

// v6Tasks gives the hub the tasks of the vantage6 5 API (job_id and the
// tasks waiting on a completed run's task), asked with the service account.
type v6Tasks struct{ r *v6api.Resolver }

func (t v6Tasks) Task(ctx context.Context, id int64, fresh bool) (hub.Task, error) {
	v, err := t.r.APIVersion(ctx)
	if err != nil {
		return hub.Task{}, err
	}
	if v < 5 {
		return hub.Task{}, hub.ErrNoTaskLookup
	}
	lookup := t.r.Task
	if fresh {
		lookup = t.r.RefreshTask
	}
	i, err := lookup(ctx, id, "")
	if err != nil {
		return hub.Task{}, err
	}
	return hub.Task{ID: i.ID, JobID: i.JobID, ParentID: i.ParentID, CollaborationID: i.CollaborationID, RequiredBy: i.RequiredBy}, nil
}

// tasks is the hub's task lookup: with the vantage6 API when it is (or may
// be, with auto) 5.x, none otherwise.
func (a *App) tasks() hub.Tasks {
	if a.v6 == nil || a.cfg.V6Version == validate.V6Version4 || a.cfg.V6Version == "" {
		return nil
	}
	return v6Tasks{r: a.v6}
}
